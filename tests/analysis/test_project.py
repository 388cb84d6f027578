"""Projections and neighbourhood views on arrays (synthetic data, small n)."""

from __future__ import annotations


import numpy as np
import pytest

from featx.analysis import project as P
from _synth import clusters


def test_subsample_is_stratified_seeded_and_sorted():
    y = np.array([0] * 990 + [1] * 10)
    idx = P.subsample(y, 100, seed=1)
    assert np.all(np.diff(idx) > 0)
    assert np.sum(y[idx] == 1) == 10  # the rare class keeps min(n_c, 10) rows
    assert 95 <= len(idx) <= 110
    assert np.array_equal(idx, P.subsample(y, 100, seed=1))
    assert not np.array_equal(idx, P.subsample(y, 100, seed=2))
    assert np.array_equal(P.subsample(y, None), np.arange(1000))


def test_pca_projection_and_transform_agree():
    X, y = clusters()
    p = P.Projector("pca", 3).fit(X)
    assert p.embedding_.shape == (160, 3)
    assert np.allclose(p.transform(X), p.embedding_)
    var = np.var(p.embedding_, axis=0)
    assert var[0] >= var[1] >= var[2]


def test_tsne_is_seeded_and_has_no_transform():
    X, y = clusters(n_per_class=25)
    a = P.Projector("tsne", 2, random_state=3).fit_transform(X)
    b = P.Projector("tsne", 2, random_state=3).fit_transform(X)
    assert np.allclose(a, b)
    assert not hasattr(P.Projector("tsne"), "transform")
    # well separated blobs stay separated: each point's nearest embedded neighbour has its class
    d = ((a[:, None] - a[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert np.mean(y[d.argmin(axis=1)] == y) > 0.95


def test_project_subsamples_tsne_but_projects_all_rows_with_pca():
    X, y = clusters(n_per_class=50)
    t = P.project(X, y, "tsne", 2, max_rows=80)
    assert len(t.index) < 200 and t.coords.shape == (len(t.index), 2)
    assert "of 200 rows" in t.note
    p = P.project(X, y, "pca", 2, max_rows=80)
    assert p.coords.shape == (200, 2) and "fitted on" in p.note


@pytest.mark.slow
def test_umap_projection():
    pytest.importorskip("umap")
    X, y = clusters(n_per_class=30)
    e = P.project(X, y, "umap", 2, seed=0).coords
    assert e.shape == (120, 2) and np.all(np.isfinite(e))
    from sklearn.metrics import silhouette_score

    kept = silhouette_score(e, y)  # the four clusters stay apart in 2-D (0.95 here); shuffled labels: about 0
    shuffled = silhouette_score(e, np.random.default_rng(0).permutation(y))
    assert kept > 0.5 and kept > shuffled + 0.5, (kept, shuffled)


def test_explained_variance_and_linear_separability():
    X, y = clusters()
    r = P.explained_variance(X, 10)
    assert len(r) == 10 and np.all(np.diff(r) <= 1e-12) and r.sum() <= 1
    sep = P.linear_separability(X, y, ks=(2, 10))
    assert sep[10] > 0.95
    noise = P.linear_separability(np.random.default_rng(0).normal(size=X.shape), y, ks=(2, 10))
    assert noise[10] < 0.6


def test_outliers_finds_the_planted_row():
    X, y = clusters()
    X[5] = -X[5] * 3  # class-0 row moved far away
    found = P.outliers(X, y, per_class=2)
    assert (5, 0, pytest.approx(found[0][2])) == found[0]
    assert len(found) == 8 and {c for _, c, _ in found} == {0, 1, 2, 3}


def test_overlap_and_bridges():
    rng = np.random.default_rng(0)
    # a and c are separated; b sits between them; d is far away
    centers = {0: [-5, 0], 1: [0, 0], 2: [5, 0], 3: [0, 40]}
    y = np.repeat(np.arange(4), 60)
    X = np.array([centers[c] for c in y]) + rng.normal(size=(240, 2)) * 2.0
    X = np.hstack([X, np.full((240, 1), 30.0)])  # offset so cosine behaves like Euclidean here
    m = P.neighbourhood_overlap(X, y, k=10)
    assert m.shape == (4, 4) and np.allclose(m.sum(axis=1), 1)
    assert m[3, 3] > 0.95 and m[0, 2] < 0.05
    br = P.bridges(m, ["a", "b", "c", "d"])
    assert [(d["class"], set(d["between"])) for d in br] == [("b", {"a", "c"})]
    assert br[0]["direct"] < 0.05 < min(br[0]["shares"])
    rand = P.neighbourhood_overlap(rng.normal(size=(400, 20)), rng.integers(0, 4, 400))
    assert P.bridges(rand, list("abcd")) == []  # random features: every pair meets, nothing bridges
    pairs = P.confused_pairs(m, ["a", "b", "c", "d"], top=2)
    assert {frozenset(p[:2]) for p in pairs} == {frozenset("ab"), frozenset("bc")}
