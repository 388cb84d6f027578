"""featx.stats: the paired comparison of two classifiers (bootstrap, McNemar) against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, f1_score

from featx.stats import macro_f1_score, mcnemar_exact, paired_bootstrap


def planted(n: int, classes: int, acc_a: float, acc_b: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)

    def model(acc):
        return np.where(rng.random(n) < acc, y, rng.integers(0, classes, n))

    return y, model(acc_a), model(acc_b)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_paired_bootstrap_matches_a_direct_computation(metric):
    y, a, b = planted(60, 3, 0.7, 0.8)
    score = {"accuracy": lambda t, p: accuracy_score(t, p),
             "macro_f1": lambda t, p: f1_score(t, p, labels=[0, 1, 2], average="macro", zero_division=0)}[metric]
    got = paired_bootstrap(y, a, b, metric=metric, n_classes=3, n_boot=200, seed=7)
    rng = np.random.default_rng(7)
    reps = []
    for _ in range(200):
        idx = rng.integers(0, 60, 60)
        reps.append((score(y[idx], a[idx]), score(y[idx], b[idx])))
    reps = np.array(reps)
    diffs = reps[:, 0] - reps[:, 1]
    assert got["a"] == pytest.approx(score(y, a)) and got["b"] == pytest.approx(score(y, b))
    assert got["difference"] == pytest.approx(score(y, a) - score(y, b))
    assert got["ci"] == pytest.approx(list(np.percentile(diffs, [2.5, 97.5])))
    assert got["difference_se"] == pytest.approx(diffs.std(ddof=1))
    assert got["a_se"] == pytest.approx(reps[:, 0].std(ddof=1)) and got["b_se"] == pytest.approx(reps[:, 1].std(ddof=1))
    assert got["ci"][0] < got["difference"] < got["ci"][1]


def test_the_interval_narrows_with_more_rows_and_excludes_zero_for_a_large_gap():
    small = paired_bootstrap(*planted(50, 2, 0.6, 0.9), n_boot=500)
    large = paired_bootstrap(*planted(2000, 2, 0.6, 0.9), n_boot=500)
    assert large["ci"][1] - large["ci"][0] < (small["ci"][1] - small["ci"][0]) / 3
    assert large["ci"][1] < 0


def test_macro_f1_counts_absent_classes_as_zero_like_scikit_learn():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0, 1, 1, 1, 0, 0])
    for k in (2, 4):  # classes 2 and 3 never occur
        assert macro_f1_score(y, p, k) == pytest.approx(f1_score(y, p, labels=range(k), average="macro",
                                                                 zero_division=0))


@pytest.mark.parametrize("a_only,b_only", [(0, 0), (4, 4), (1, 9), (10, 2), (0, 6), (57, 81), (300, 240)])
def test_mcnemar_exact_equals_scipy_binomtest_on_the_discordant_counts(a_only, b_only):
    both, neither = 40, 7
    ca = np.array([1] * a_only + [0] * b_only + [1] * both + [0] * neither, bool)
    cb = np.array([0] * a_only + [1] * b_only + [1] * both + [0] * neither, bool)
    got = mcnemar_exact(ca, cb)
    n = a_only + b_only
    expected = binomtest(a_only, n, 0.5).pvalue if n else 1.0
    assert (got["a_only"], got["b_only"], got["discordant"]) == (a_only, b_only, n)
    assert got["p_value"] == pytest.approx(expected, rel=1e-9)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="labels"):
        paired_bootstrap([0, 1], [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="rows"):
        mcnemar_exact([True], [True, False])
