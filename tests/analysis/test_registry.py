"""The score registry: one record per score, key order, ranked keys, and a score added by its decorator alone."""

from __future__ import annotations

import numpy as np
import pytest

from featx.analysis import registry
from featx.analysis import transfer as T


def test_keys_keep_their_order_and_the_cross_fitted_variants_rank():
    assert T.score_keys() == ("leep", "nce", "task_overlap", "task_overlap_u", "logme", "hscore", "hscore_shrink",
                              "gbc", "knn_acc", "probe_acc", "fisher", "silhouette", "nce_cv", "task_overlap_u_cv")
    assert T.ranked_keys() == ("leep", "nce_cv", "task_overlap", "task_overlap_u_cv", "logme", "hscore",
                               "hscore_shrink", "gbc", "knn_acc", "probe_acc", "fisher", "silhouette")
    assert T.score_keys(source=True) == ("leep", "nce", "task_overlap", "task_overlap_u", "nce_cv",
                                         "task_overlap_u_cv")
    assert T.estimate_keys() == ("task_overlap_se", "task_overlap_baseline")
    assert all(s.peak is not None for s in T.scores(source=False))


def test_a_decorated_function_is_a_score_and_names_are_checked(monkeypatch):
    monkeypatch.setattr(registry, "SCORES", dict(registry.SCORES))

    @registry.register_score("mean_norm", needs="features", peak=lambda n, d, c, **_: 8 * n * d,
                             kwargs=lambda seed, **_: {"seed": seed})
    def mean_norm(F, y, *, seed=0):
        return float(np.linalg.norm(F, axis=1).mean())

    assert T.score_keys()[-3:] == ("mean_norm", "nce_cv", "task_overlap_u_cv")
    assert T.ranked_keys()[-1] == "mean_norm" and T.peak_bytes("mean_norm", 10, 4, 2) == 320
    assert registry.SCORES["mean_norm"].kwargs(seed=3, max_rows=10, k=5) == {"seed": 3}
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_score("mean_norm", needs="features", peak=lambda n, d, c, **_: 0)(mean_norm)
    with pytest.raises(ValueError, match="peak-memory model"):
        registry.register_score("other", needs="features")
    with pytest.raises(ValueError, match="needs must be one of"):
        registry.register_score("other", needs="pixels")
    with pytest.raises(KeyError):
        T.peak_bytes("nce", 10, 4, 2)  # a top-1 source score is too small to budget
