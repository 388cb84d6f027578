"""Small statistics shared by classifiers and analyses: label codes, fold counts, standard errors, baselines,
and the paired comparison of two classifiers on the same rows (a paired bootstrap, McNemar's exact test).

numpy only; no other featx module.
"""

from __future__ import annotations

import math

import numpy as np


def encode_labels(y) -> tuple[np.ndarray, int]:
    """Labels as codes 0..C-1 (only the classes that occur) and C."""
    _, inv = np.unique(np.asarray(y), return_inverse=True)
    return inv.ravel(), int(inv.max()) + 1 if inv.size else 0


def n_folds(y, cv: int) -> int:
    """Stratified folds usable on ``y``: ``cv``, or fewer when the rarest class has fewer rows."""
    counts = np.bincount(encode_labels(y)[0])
    return int(min(cv, counts.min())) if counts.size else 0


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on ``n`` independent images."""
    return math.sqrt(accuracy * (1 - accuracy) / n) if n else float("nan")


def majority_accuracy(y_train, y_eval=None) -> float:
    """Accuracy of always predicting the most frequent class of ``y_train`` on ``y_eval`` (default:
    ``y_train`` itself), the chance baseline."""
    y_train = np.asarray(y_train)
    y_eval = y_train if y_eval is None else np.asarray(y_eval)
    if not len(y_eval):
        return float("nan")
    values, counts = np.unique(y_train, return_counts=True)
    return float(np.mean(y_eval == values[np.argmax(counts)]))


# ---------------------------------------------------------------- two classifiers on the same rows

PAIRED_METRICS = ("accuracy", "macro_f1")


def macro_f1_score(y, pred, n_classes: int) -> float:
    """Macro F1 over the labels ``0..n_classes-1`` (a class without true or predicted rows counts 0), as
    scikit-learn's ``f1_score(average="macro", labels=range(n_classes), zero_division=0)``."""
    return _macro_f1(np.bincount(np.asarray(y) * n_classes + np.asarray(pred),
                                 minlength=n_classes * n_classes).reshape(n_classes, n_classes))


def _macro_f1(cm: np.ndarray) -> float:
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)  # 2 tp + fp + fn
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)))


def _score(metric: str, y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    if metric == "accuracy":
        return float(np.mean(y == pred)) if len(y) else float("nan")
    if metric == "macro_f1":
        return macro_f1_score(y, pred, n_classes)
    raise ValueError(f"metric {metric!r}: use one of {', '.join(PAIRED_METRICS)}")


def paired_bootstrap(y, pred_a, pred_b, *, metric: str = "accuracy", n_classes: int | None = None,
                     n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Model A against model B on the same rows: ``metric`` of each, their difference ``A - B``, and
    bootstrap standard errors and a percentile interval of the difference.

    Replicate ``b`` (``b = 0..n_boot-1``) scores both models on the rows
    ``np.random.default_rng(seed).integers(0, n, n)`` (the b-th draw of one generator): the same rows
    for A and B, so what the two models share cancels. Returns ``a``, ``b``, ``difference`` (on all
    rows), ``a_se``, ``b_se``, ``difference_se`` (standard deviations of the replicates), ``ci`` (the
    ``level`` percentile interval of the replicated differences, ``np.percentile``'s linear rule),
    ``n``, ``n_boot``, ``seed``, ``level`` and ``metric``. Macro F1 averages over the classes
    ``0..n_classes-1`` in every replicate, as ``metrics.json`` does; on very few rows a replicate can
    miss a class, which then scores 0 for both models (it widens the spread of each model's macro F1,
    not of their difference).
    """
    y, pa, pb = (np.asarray(v, dtype=np.int64).ravel() for v in (y, pred_a, pred_b))
    if not (len(y) == len(pa) == len(pb)):
        raise ValueError(f"paired_bootstrap: {len(y)} labels, {len(pa)} and {len(pb)} predictions")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"paired_bootstrap: n_boot {n_boot} must be >= 1 and level {level} in (0, 1)")
    n = len(y)
    k = int(n_classes if n_classes is not None else max(y.max(initial=-1), pa.max(initial=-1),
                                                         pb.max(initial=-1)) + 1)
    a, b = _score(metric, y, pa, k), _score(metric, y, pb, k)
    out = {"metric": metric, "n": n, "n_boot": n_boot, "seed": seed, "level": level,
           "a": a, "b": b, "difference": a - b}
    if n == 0:
        return {**out, "a_se": float("nan"), "b_se": float("nan"), "difference_se": float("nan"),
                "ci": [float("nan"), float("nan")]}
    rng = np.random.default_rng(seed)
    reps = np.empty((n_boot, 2))
    for r in range(n_boot):
        idx = rng.integers(0, n, n)
        yi = y[idx]
        reps[r] = _score(metric, yi, pa[idx], k), _score(metric, yi, pb[idx], k)
    diffs = reps[:, 0] - reps[:, 1]
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(diffs, [tail, 100 - tail])
    return {**out, "a_se": float(reps[:, 0].std(ddof=1)) if n_boot > 1 else float("nan"),
            "b_se": float(reps[:, 1].std(ddof=1)) if n_boot > 1 else float("nan"),
            "difference_se": float(diffs.std(ddof=1)) if n_boot > 1 else float("nan"),
            "ci": [float(lo), float(hi)]}


def mcnemar_exact(correct_a, correct_b) -> dict:
    """McNemar's exact test of equal accuracy on paired rows: ``a_only`` (rows only A got right),
    ``b_only`` (only B), and the two-sided ``p_value`` of ``a_only`` among the ``a_only + b_only``
    discordant rows under Binomial(n, 1/2) (``min(1, 2 P(X <= min))``, as
    ``scipy.stats.binomtest(a_only, n, 0.5).pvalue``), computed exactly in integers."""
    ca, cb = np.asarray(correct_a, bool).ravel(), np.asarray(correct_b, bool).ravel()
    if len(ca) != len(cb):
        raise ValueError(f"mcnemar_exact: {len(ca)} and {len(cb)} rows")
    a_only, b_only = int(np.sum(ca & ~cb)), int(np.sum(~ca & cb))
    n = a_only + b_only
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1))
    p = 1.0 if n == 0 or a_only == b_only else min(1.0, 2 * tail / 2**n)
    return {"a_only": a_only, "b_only": b_only, "discordant": n, "p_value": float(p)}
