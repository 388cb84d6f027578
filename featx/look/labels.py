"""Label issues by confident learning (Northcutt et al., 2021) on out-of-fold predicted probabilities.

:func:`out_of_fold_proba` gives every labelled row a probability vector from a classifier of the registry
(:mod:`featx.learn.classify`) that never saw that row (stratified k-fold); :func:`find_label_issues` then

1. sets each class's threshold to its mean self-confidence (the mean probability of class ``k`` over the rows
   labelled ``k``);
2. counts a row as confidently of class ``j`` when ``p_j`` reaches ``j``'s threshold (the most probable of
   those classes when several do); rows confidently of a class other than their label are the off-diagonal of
   the confident joint;
3. keeps those whose predicted class is not their label, and ranks them by self-confidence ``p_label`` or
   normalised margin ``(p_label - max_{j != label} p_j + 1) / 2`` (lowest first).

This is cleanlab's ``find_label_issues(filter_by="confident_learning")``, written out so featx needs no extra
package; ``tests/look/test_labels.py`` checks both agree on the same probabilities. numpy and scikit-learn only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import ClassifierError
from ..learn import classify
from ..stats import n_folds

RANK_BY = ("self_confidence", "normalized_margin")
"""How flagged rows are ranked (cleanlab's names): the lower the score, the likelier the label is wrong."""

_EPS = 1e-6  # cleanlab's FLOATING_POINT_COMPARISON


def out_of_fold_proba(X: np.ndarray, y: np.ndarray, n_classes: int, clf: str = "softmax", *, folds: int = 5,
                      preprocess: str | None = None, class_weight: str | None = None, seed: int = 0,
                      params: dict | None = None, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``(N, n_classes)`` probabilities, each row predicted by classifier ``clf`` fitted on the other folds.

    Stratified ``folds``-fold (fewer when the rarest class has fewer rows; at least 2). ``params`` are the
    classifier's own parameters (``C``, ...: a ``featx fit --search`` run's best ones); ``progress(done, total)``
    is called after each fold.
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    X = np.asarray(X)
    y = np.asarray(y, dtype=np.int64)
    k = n_folds(y, folds)
    if k < 2:
        rare = int(np.argmin(np.bincount(y)[np.unique(y)]))
        raise ClassifierError(f"class index {np.unique(y)[rare]} has a single labelled row; out-of-fold "
                              "probabilities need at least 2 rows per class")
    proto = classify.make_classifier(clf, preprocess=preprocess, class_weight=class_weight, random_state=seed,
                                     **{f"clf__{key}": v for key, v in (params or {}).items()})
    proba = np.zeros((len(y), n_classes))
    for i, (tr, te) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(X, y)):
        model = clone(proto).fit(X[tr], y[tr])
        proba[np.ix_(te, model.classes_)] = model.predict_proba(X[te])
        if progress is not None:
            progress(i + 1, k)
    return proba


def self_confidence(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """``p_label`` per row."""
    labels = np.asarray(labels, dtype=np.int64)
    return proba[np.arange(len(labels)), labels]


def normalized_margin(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """``(p_label - max_{j != label} p_j + 1) / 2`` per row: below 0.5 when another class is more probable."""
    labels = np.asarray(labels, dtype=np.int64)
    others = proba.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    return (self_confidence(labels, proba) - others.max(axis=1) + 1) / 2


def class_thresholds(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Per class, the mean self-confidence of its rows (2, unreachable, for a class without rows)."""
    labels = np.asarray(labels, dtype=np.int64)
    t = np.full(proba.shape[1], 2.0)
    for k in np.unique(labels):
        t[k] = proba[labels == k, k].mean()
    return np.clip(t, 2 * _EPS, None)


@dataclass
class LabelIssues:
    """What :func:`find_label_issues` found.

    ``flagged``: row indices of the likely label errors, most suspicious first; ``suggested``: per row, the
    class it confidently belongs to (its predicted class when it is confident of none); ``score``: per row,
    the ranking score (lower = more suspicious); ``self_confidence``, ``margin``: both scores per row;
    ``thresholds``: per class; ``joint``: the confident joint (rows: given label, columns: confident class).
    """

    flagged: np.ndarray
    suggested: np.ndarray
    score: np.ndarray
    self_confidence: np.ndarray
    margin: np.ndarray
    thresholds: np.ndarray
    joint: np.ndarray
    rank_by: str

    @property
    def mask(self) -> np.ndarray:
        """Boolean mask of :attr:`flagged` rows."""
        m = np.zeros(len(self.score), bool)
        m[self.flagged] = True
        return m


def check_rank_by(rank_by: str) -> str:
    """``rank_by`` if it is one of :data:`RANK_BY`, else a :class:`ClassifierError` naming them."""
    if rank_by not in RANK_BY:
        raise ClassifierError(f"--rank-by {rank_by!r}: use {' or '.join(RANK_BY)}")
    return rank_by


def find_label_issues(labels: Sequence[int], proba: np.ndarray, *, rank_by: str = "self_confidence") -> LabelIssues:
    """Rows whose given label is probably wrong, by confident learning on out-of-fold ``proba`` (see module)."""
    check_rank_by(rank_by)
    labels = np.asarray(labels, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or len(proba) != len(labels):
        raise ValueError(f"proba {proba.shape} does not match {len(labels)} labels")
    n, c = proba.shape
    thresholds = class_thresholds(labels, proba)
    confident = proba >= thresholds - _EPS
    n_confident = confident.sum(axis=1)
    argmax = proba.argmax(axis=1)
    guess = np.where(n_confident > 1, argmax, confident.argmax(axis=1))
    some = n_confident > 0
    joint = np.zeros((c, c), np.int64)
    np.add.at(joint, (labels[some], guess[some]), 1)
    off = some & (guess != labels)
    # a row whose label is (within rounding) its most probable class is not an issue
    bumped = proba.copy()
    bumped[np.arange(n), labels] += _EPS
    off &= bumped.argmax(axis=1) != labels
    sc, margin = self_confidence(labels, proba), normalized_margin(labels, proba)
    score = sc if rank_by == "self_confidence" else margin
    rows = np.flatnonzero(off)
    flagged = rows[np.argsort(score[rows], kind="stable")]
    suggested = np.where(some, guess, argmax)
    return LabelIssues(flagged, suggested, score, sc, margin, thresholds, joint, rank_by)


def least_sure(proba: np.ndarray, top: int) -> np.ndarray:
    """The ``top`` rows whose two most probable classes are closest (smallest top-1 minus top-2), least sure first."""
    part = np.sort(proba, axis=1)
    gap = part[:, -1] - (part[:, -2] if proba.shape[1] > 1 else 0.0)
    return np.argsort(gap, kind="stable")[:top]
