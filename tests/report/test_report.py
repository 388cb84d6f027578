"""featx.report: metrics, run folders, figures."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from featx.report import metrics, plots, runs
from featx.stats import binomial_se
from helpers import assert_png


def test_binomial_se_format():
    assert metrics.format_accuracy(0.93, 96) == "0.930 +- 0.026"
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    assert metrics.format_accuracy(1.0, 18) == "1.000 +- 0.000"


def test_compute_metrics_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    proba = rng.dirichlet(np.ones(3), 50)
    pred = proba.argmax(1)
    m = metrics.compute_metrics(y, pred, proba, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["weighted_f1"] == pytest.approx(f1_score(y, pred, average="weighted"))
    p, r, f, s = precision_recall_fscore_support(y, pred)
    assert [m["per_class"][c]["recall"] for c in "abc"] == pytest.approx(list(r))
    assert [m["per_class"][c]["support"] for c in "abc"] == list(s)
    top2 = np.mean([y[i] in np.argsort(-proba[i])[:2] for i in range(50)])
    assert m["top_k"] == 2 and m["top_k_accuracy"] == pytest.approx(top2) and top2 > m["accuracy"]
    assert np.sum(m["confusion_matrix"]) == 50


def test_row_normalise_keeps_empty_rows_zero():
    out = metrics.row_normalise(np.array([[3, 1], [0, 0]]))
    assert out.tolist() == [[0.75, 0.25], [0.0, 0.0]]


def test_heatmap_and_contact_sheet(tmp_path):
    size = assert_png(plots.heatmap(np.eye(4), list("abcd"), list("abcd"), tmp_path / "h.png", title="t"))
    big = assert_png(plots.heatmap(np.eye(12), [f"class-{i}" for i in range(12)], [f"c{i}" for i in range(12)],
                             tmp_path / "h12.png"))
    assert big[0] > size[0] and big[1] > size[1]
    img = tmp_path / "red.png"
    Image.new("RGB", (300, 200), (255, 0, 0)).save(img)
    sheet = plots.contact_sheet([img, tmp_path / "missing.jpg"], ["red one", "gone"], tmp_path / "s.png")
    assert_png(sheet, min_side=100)
    with Image.open(sheet) as im:
        px = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert ((px[:, 0] > 200) & (px[:, 1] < 50)).any()  # the real thumbnail is drawn
    assert (np.abs(px.astype(int) - 160).max(1) < 5).any()  # the grey placeholder too
    assert_png(plots.contact_sheet([], [], tmp_path / "empty.png"), min_side=50)
    with pytest.raises(ValueError):
        plots.heatmap(np.eye(2), ["a"], ["a", "b"], tmp_path / "x.png")


def test_new_run_dir(tmp_path):
    a = runs.new_run_dir(root=tmp_path)
    b = runs.new_run_dir(root=tmp_path)
    assert a != b and a.is_dir() and b.is_dir()
    assert runs.new_run_dir(name="exp", root=tmp_path) == tmp_path / "exp"
    assert runs.new_run_dir(out=tmp_path / "x" / "y") == tmp_path / "x" / "y"


def test_new_run_dir_never_reuses_a_run_silently(tmp_path):
    exp = runs.new_run_dir(name="exp", root=tmp_path)
    (exp / "metrics.json").write_text("{}")
    again = runs.new_run_dir(name="exp", root=tmp_path)
    assert again == tmp_path / "exp-2" and again.is_dir()
    (again / "metrics.json").write_text("{}")
    assert runs.new_run_dir(name="exp", root=tmp_path) == tmp_path / "exp-3"
    assert runs.new_run_dir(name="exp", root=tmp_path, overwrite=True) == exp
    assert (exp / "metrics.json").exists()  # overwrite reuses the folder, it does not empty it
    empty = tmp_path / "made-by-hand"
    empty.mkdir()
    assert runs.new_run_dir(out=empty) == empty  # an empty folder holds no run


def test_write_csv_unions_columns(tmp_path):
    path = runs.write_csv(tmp_path / "t.csv", [{"a": 1, "b": None}, {"c": 2.5}])
    assert path.read_text().splitlines() == ["a,b,c", "1,,", ",,2.5"]
