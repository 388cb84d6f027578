"""Every registered score (:mod:`featx.analysis.registry`) of one feature matrix, under the memory budget:
on the features, on their first ``--score-dims`` principal components, or not at all."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import AnalysisError
from . import project, transfer
from .budget import DEFAULT_SCORE_DIMS, ScoreLog, default_budget, fmt_bytes
from .registry import Score
from .transfer import score_keys, scores

WHITENED = ("hscore", "hscore_shrink", "fisher")
"""Scores that whiten the features: they barely separate backbones when n <= d (said in the notes)."""


class _Reduced:
    """The first ``k`` principal components of F, computed once, the first time a score needs them."""

    def __init__(self, F: np.ndarray, k: int, seed: int, log: ScoreLog, budget: int):
        self.F, self.k, self.seed, self.log, self.budget = F, min(k, *F.shape), seed, log, budget
        self.Z: np.ndarray | None = None
        self.tried = False

    def get(self) -> np.ndarray | None:
        if not self.tried:
            self.tried = True
            need = transfer.pca_peak_bytes(*self.F.shape, self.k)
            if need > self.budget:
                self.log.note(f"PCA to {self.k} dims not run: needs about {fmt_bytes(need)}, over the "
                              f"{fmt_bytes(self.budget)} budget (--max-memory)")
                return None
            out = self.log.guarded("pca", lambda: transfer.pca_reduce(self.F, self.k, seed=self.seed))
            if out is not None:
                self.Z, kept = out
                self.log.note(f"PCA to {self.k} dims (--score-dims) keeps {kept:.1%} of the variance")
        return self.Z


def _run(s: dict, score: Score, data: Callable[[], np.ndarray], y: np.ndarray, options: dict, log: ScoreLog) -> None:
    """``score`` and its cross-fitted variant into ``s``, each guarded; an Estimate's se and baseline beside it."""
    for key, kwargs in score.variants():
        value = log.guarded(key, lambda kwargs=kwargs: score.fn(data(), y, **kwargs(**options)))
        if score.estimate and value is not None:
            s[key], s[f"{key}_se"], s[f"{key}_baseline"] = float(value), value.se, value.baseline
        else:
            s[key] = value


def compute_scores(F: np.ndarray, y: np.ndarray, logits: np.ndarray | None, *, seed: int = 0,
                   max_rows: int = 20000, max_memory: int | None = None,
                   score_dims: int = DEFAULT_SCORE_DIMS, k: int = 10) -> tuple[dict, list[str], dict]:
    """All registered scores for one feature matrix: (scores incl. extras, notes, seconds per score).

    Scores needing logits are None when ``logits`` is None. Scores registered with ``sample`` (the linear
    probe) use at most ``max_rows`` stratified rows, kNN accuracy ``max_rows`` queries, silhouette 5000 rows
    (stated in the notes).

    Memory: each score's peak is estimated from (n, d, classes) before it runs (its registered ``peak``);
    above ``max_memory`` bytes (default: :func:`default_budget`) a feature score runs on the first
    ``score_dims`` principal components instead, or is skipped when even that would not fit. Each score that
    fails is None with a note and an entry under ``errors``; ``score_dims`` in the result says on how many
    dims each feature score ran.
    """
    if len(np.unique(y)) < 2:
        raise AnalysisError("transferability needs at least 2 classes in the rows analysed")
    budget = default_budget() if max_memory is None else int(max_memory)
    n, d = F.shape
    c = len(np.unique(y))
    z = 0 if logits is None else logits.shape[1]
    s: dict = {key: None for key in score_keys()}
    log = ScoreLog()
    options = {"seed": seed, "max_rows": max_rows, "k": k}
    estimates: dict[str, int] = {}
    if logits is not None:
        zhat = np.asarray(logits).argmax(axis=1)  # the argmax of softmax(logits)
        for score in scores(source=True):
            if score.peak is not None:
                need = estimates[score.name] = score.peak(n, d, c, z=z, max_rows=max_rows)
                if need > budget:
                    log.note(f"{score.name} skipped: needs about {fmt_bytes(need)}, over the {fmt_bytes(budget)} "
                             "budget (--max-memory)")
                    continue
            data = (lambda: transfer.softmax(logits)) if score.needs == "probs" else (lambda: zhat)
            _run(s, score, data, y, options, log)
        s["source_labels_used"] = int(len(np.unique(zhat)))
    reduced = _Reduced(F, score_dims, seed, log, budget)
    dims: dict[str, int | None] = {}
    for score in scores(source=False):
        key, X, Y, rows, idx = score.name, F, y, n, None
        if score.sample and n > max_rows:
            idx = project.subsample(y, max_rows, seed)
            X, Y, rows = F[idx], y[idx], len(idx)
            log.note(f"{key} on a stratified {rows:,} of {n:,} rows")
        dims[key] = d
        need = estimates[key] = score.peak(rows, d, c, z=z, max_rows=max_rows)
        if need > budget:
            pcs = reduced.k
            small = score.peak(rows, pcs, c, z=z, max_rows=max_rows)
            Z = reduced.get() if pcs < d and small <= budget else None
            if Z is None:
                dims[key] = None
                log.note(f"{key} skipped: needs about {fmt_bytes(need)} on {d:,} dims (and "
                         f"{fmt_bytes(small)} on {pcs:,} PCA dims), over the {fmt_bytes(budget)} budget (--max-memory)")
                continue
            X = Z if idx is None else Z[idx]
            dims[key] = pcs
            log.note(f"{key} on the first {pcs:,} principal components: about {fmt_bytes(need)} on all {d:,} dims "
                     f"is over the {fmt_bytes(budget)} budget (--max-memory)")
        _run(s, score, lambda X=X: X, Y, options, log)
    if n <= d and any(dims.get(key) == d for key in WHITENED):
        log.note(f"n <= d ({n:,} rows, {d:,} dims): hscore saturates at C-1 and hscore_shrink / fisher "
                 "whiten with few rows, so they barely separate backbones; compare them on PCA-reduced features")
    for score in scores():
        if score.caveat and (text := score.caveat(n, max_rows)):
            log.note(text)
    s["score_dims"] = dims
    s["memory"] = {"budget_mib": round(budget / 2**20), "estimate_mib": {k: round(v / 2**20, 1)
                                                                          for k, v in estimates.items()}}
    s["errors"] = log.errors
    return s, log.notes, log.seconds
