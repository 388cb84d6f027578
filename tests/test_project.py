"""Projections, neighbourhood views and their plots (synthetic data, small n)."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from sklearn.utils.estimator_checks import parametrize_with_checks

from featx import project as P
from featx import projection_plots as PP


def blobs(n_per_class=40, c=4, d=30, sep=4.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(c), n_per_class)
    centers = rng.normal(size=(c, d)) * sep
    return centers[y] + rng.normal(size=(len(y), d)), y


def assert_png(path, min_size=100):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= min_size


@parametrize_with_checks([P.Projector("pca", 2)])
def test_projector_sklearn_contract(estimator, check):
    check(estimator)


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
    X, y = blobs()
    p = P.Projector("pca", 3).fit(X)
    assert p.embedding_.shape == (160, 3)
    assert np.allclose(p.transform(X), p.embedding_)
    var = np.var(p.embedding_, axis=0)
    assert var[0] >= var[1] >= var[2]


def test_tsne_is_seeded_and_has_no_transform():
    X, y = blobs(n_per_class=25)
    a = P.Projector("tsne", 2, random_state=3).fit_transform(X)
    b = P.Projector("tsne", 2, random_state=3).fit_transform(X)
    assert np.allclose(a, b)
    assert not hasattr(P.Projector("tsne"), "transform")
    # well separated blobs stay separated: each point's nearest embedded neighbour has its class
    d = ((a[:, None] - a[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert np.mean(y[d.argmin(axis=1)] == y) > 0.95


def test_project_subsamples_tsne_but_projects_all_rows_with_pca():
    X, y = blobs(n_per_class=50)
    t = P.project(X, y, "tsne", 2, max_rows=80)
    assert len(t.index) < 200 and t.coords.shape == (len(t.index), 2)
    assert "of 200 rows" in t.note
    p = P.project(X, y, "pca", 2, max_rows=80)
    assert p.coords.shape == (200, 2) and "fitted on" in p.note


def test_umap_projection():
    pytest.importorskip("umap")
    X, y = blobs(n_per_class=30)
    e = P.project(X, y, "umap", 2, seed=0).coords
    assert e.shape == (120, 2) and np.all(np.isfinite(e))


def test_explained_variance_and_linear_separability():
    X, y = blobs()
    r = P.explained_variance(X, 10)
    assert len(r) == 10 and np.all(np.diff(r) <= 1e-12) and r.sum() <= 1
    sep = P.linear_separability(X, y, ks=(2, 10))
    assert sep[10] > 0.95
    noise = P.linear_separability(np.random.default_rng(0).normal(size=X.shape), y, ks=(2, 10))
    assert noise[10] < 0.6


def test_outliers_finds_the_planted_row():
    X, y = blobs()
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


@pytest.mark.parametrize("n_classes", [2, 50])
def test_scatter_pngs(tmp_path, n_classes):
    rng = np.random.default_rng(0)
    y = rng.integers(0, n_classes, 2000)
    classes = [f"class {i}" for i in range(n_classes)]
    PP.scatter(rng.normal(size=(2000, 2)), y, classes, tmp_path / "a.png", title="t", note="showing 2,000 of 9,000")
    PP.scatter(rng.normal(size=(2000, 3)), y, classes, tmp_path / "b.png", title="t")
    for name in ("a.png", "b.png"):
        assert_png(tmp_path / name)
    assert len(set(PP.class_colors(n_classes))) == n_classes


def test_thumbnail_scatter_with_and_without_images(tmp_path):
    X, y = blobs(n_per_class=10)
    paths = []
    for i in range(len(y)):
        p = tmp_path / f"img{i}.png"
        if i % 2:
            Image.new("RGB", (40, 30), (200, 20 * y[i], 50)).save(p)
        paths.append(p)  # even rows: missing file -> plain dot
    PP.thumbnail_scatter(X[:, :2], y, list("abcd"), paths, tmp_path / "t.png", max_thumbs=16)
    assert_png(tmp_path / "t.png")
    PP.thumbnail_scatter(X[:, :2], y, list("abcd"), [tmp_path / "none.jpg"] * len(y), tmp_path / "u.png")
    assert_png(tmp_path / "u.png")


def test_variance_and_separability_plots(tmp_path):
    PP.variance_curve(np.array([0.5, 0.3, 0.1, 0.05]), tmp_path / "v.png")
    PP.separability_curve({2: 0.6, 10: 0.9}, tmp_path / "s.png", chance=0.25)
    assert_png(tmp_path / "v.png")
    assert_png(tmp_path / "s.png")


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.data, self._in = [], None, False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in = dict(attrs).get("id") == "featx-data"

    def handle_data(self, data):
        if self._in:
            self.data = (self.data or "") + data

    def handle_endtag(self, tag):
        self._in = False


def test_interactive_html_holds_every_point(tmp_path):
    X, y = blobs(n_per_class=30)
    ids = [f"c{c}/img</script>{i}.jpg" for i, c in enumerate(y)]  # hostile id must not end the script
    path = PP.interactive_html({"PCA 2-D": (X[:, :2], np.arange(120), "all rows"),
                                "t-SNE 2-D": (X[:60, 2:4], np.arange(60), "sub-sampled")},
                               ids, y, list("abcd"), tmp_path / "x.html", title="demo <b>")
    text = path.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained, no CDN
    parser = _Collect()
    parser.feed(text)
    assert {"html", "canvas", "script", "select"} <= set(parser.tags)
    data = json.loads(parser.data)
    assert data["ids"] == ids and data["labels"] == y.tolist()
    assert len(data["views"]["PCA 2-D"]["x"]) == 120 and len(data["views"]["t-SNE 2-D"]["index"]) == 60
    assert np.allclose(data["views"]["PCA 2-D"]["y"], X[:, 1], atol=1e-4)
