"""featx.reports and featx.plots: metrics, run folders, figures, leaderboard."""

from __future__ import annotations

import csv
import json

import joblib
import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, classification_report, f1_score, precision_recall_fscore_support

import _synth
from featx import plots, reports
from featx.errors import ClassifierError
from featx.store import load_features


def test_binomial_se_format():
    assert reports.format_accuracy(0.93, 96) == "0.930 +- 0.026"
    assert reports.binomial_se(0.5, 100) == pytest.approx(0.05)
    assert reports.format_accuracy(1.0, 18) == "1.000 +- 0.000"


def test_compute_metrics_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    proba = rng.dirichlet(np.ones(3), 50)
    pred = proba.argmax(1)
    m = reports.compute_metrics(y, pred, proba, ["a", "b", "c"])
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
    out = reports.row_normalise(np.array([[3, 1], [0, 0]]))
    assert out.tolist() == [[0.75, 0.25], [0.0, 0.0]]


def _png(path, min_side=150):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= min_side and max(im.size) < 5000, im.size
        return im.size


def test_heatmap_and_contact_sheet(tmp_path):
    size = _png(plots.heatmap(np.eye(4), list("abcd"), list("abcd"), tmp_path / "h.png", title="t"))
    big = _png(plots.heatmap(np.eye(12), [f"class-{i}" for i in range(12)], [f"c{i}" for i in range(12)],
                             tmp_path / "h12.png"))
    assert big[0] > size[0] and big[1] > size[1]
    img = tmp_path / "red.png"
    Image.new("RGB", (300, 200), (255, 0, 0)).save(img)
    sheet = plots.contact_sheet([img, tmp_path / "missing.jpg"], ["red one", "gone"], tmp_path / "s.png")
    _png(sheet, min_side=100)
    with Image.open(sheet) as im:
        px = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert ((px[:, 0] > 200) & (px[:, 1] < 50)).any()  # the real thumbnail is drawn
    assert (np.abs(px.astype(int) - 160).max(1) < 5).any()  # the grey placeholder too
    _png(plots.contact_sheet([], [], tmp_path / "empty.png"), min_side=50)
    with pytest.raises(ValueError):
        plots.heatmap(np.eye(2), ["a"], ["a", "b"], tmp_path / "x.png")


def test_new_run_dir(tmp_path):
    a = reports.new_run_dir(root=tmp_path)
    b = reports.new_run_dir(root=tmp_path)
    assert a != b and a.is_dir() and b.is_dir()
    assert reports.new_run_dir(name="exp", root=tmp_path) == tmp_path / "exp"
    assert reports.new_run_dir(out=tmp_path / "x" / "y") == tmp_path / "x" / "y"


def test_fit_stores_writes_run_folder(tmp_path):
    root = tmp_path / "imgs"
    ids = []
    X, y, split, ids = _synth.blobs((40, 40), dim=8, sep=0.6)
    for i in ids[:5]:  # a few real files: others become grey placeholders
        (root / i).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), (0, 0, 200)).save(root / i, format="JPEG")
    path = _synth.store(tmp_path / "s.h5", classes=("a", "b"), X=X, y=y, split=split, ids=ids, data_root=root)
    fs = load_features(path)
    lines = []
    run, entries = reports.fit_stores([fs], "softmax", out=tmp_path / "run", echo=lines.append)
    assert run == tmp_path / "run" and len(entries) == 1
    names = {p.name for p in run.iterdir()}
    assert names == {"metrics.json", "report.txt", "confusion_matrix.png", "misclassified.png", "model.joblib",
                     "model.json"}
    m = json.loads((run / "metrics.json").read_text())
    test = split == "test"
    model = joblib.load(run / "model.joblib")
    pred = model.predict(X[test])
    assert m["accuracy"] == pytest.approx(accuracy_score(y[test], pred))
    assert m["accuracy_text"] == reports.format_accuracy(m["accuracy"], int(test.sum()))
    assert m["store"] == str(path.resolve()) and m["fingerprint"]["backbone"] == "synthetic"
    assert np.sum(m["confusion_matrix"]) == test.sum()
    assert "softmax" in lines[0] and m["accuracy_text"] in lines[0]
    sidecar = json.loads((run / "model.json").read_text())
    assert sidecar["classes"] == ["a", "b"] and sidecar["fingerprints"] == [fs.fingerprint]
    assert "precision" in (run / "report.txt").read_text()


def test_check_same_dataset(tmp_path):
    a = load_features(_synth.store(tmp_path / "a.h5"))
    b = load_features(_synth.store(tmp_path / "b.h5", data_root="/elsewhere"))
    with pytest.raises(ClassifierError, match="not features of the same dataset"):
        reports.check_same_dataset([a, b])
    X, y, split, ids = _synth.blobs()
    c = load_features(_synth.store(tmp_path / "c.h5", split=np.where(split == "test", "val", split)))
    with pytest.raises(ClassifierError, match="split differently"):
        reports.check_same_dataset([a, c])
    reports.check_same_dataset([a, load_features(_synth.store(tmp_path / "d.h5", backbone="other"))])


def test_leaderboard_table_csv_markdown(tmp_path):
    a = load_features(_synth.store(tmp_path / "good.h5", backbone="good", weights="w1", sep=4.0))
    b = load_features(_synth.store(tmp_path / "bad.h5", backbone="bad", weights="none", sep=0.3, seed=0))
    lines = []
    run, entries = reports.fit_stores([b, a], "softmax,knn", root=tmp_path / "runs", echo=lines.append)
    rows = list(csv.DictReader(open(run / "leaderboard.csv")))
    assert len(rows) == 4 and [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    accs = [float(r["accuracy"]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    assert {r["backbone"] for r in rows[:2]} == {"good"} and {r["weights"] for r in rows[2:]} == {"none"}
    md = (run / "leaderboard.md").read_text().splitlines()
    assert md[0].startswith("| # | store | backbone") and len(md) == 6
    table = "\n".join(lines)
    assert "accuracy" in table and "chance" in table
    assert all((e[1] / "model.joblib").exists() for e in entries)


def test_write_run_misclassified_uses_image_paths(tmp_path):
    """Wrong predictions appear on the contact sheet from the original image files."""
    X, y, split, ids = _synth.blobs((30, 30), dim=4, sep=0.1)
    root = tmp_path / "imgs"
    for i in ids:
        (root / i).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (0, 200, 0)).save(root / i, format="PNG")
    fs = load_features(_synth.store(tmp_path / "s.h5", classes=("a", "b"), X=X, y=y, split=split, ids=ids,
                                    data_root=root))
    run, (entry,) = reports.fit_stores([fs], "knn", out=tmp_path / "r")
    m = entry[0]
    assert m["accuracy"] < 1.0
    with Image.open(run / "misclassified.png") as im:
        px = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert ((px[:, 1] > 150) & (px[:, 0] < 50)).any()


# ---------------------------------------------------------------- real features


@pytest.mark.slow
def test_real_monet_run_folder_consistent_with_sklearn(monet_lite0_store, tmp_path):
    fs = load_features(monet_lite0_store)
    run, ((m, _),) = reports.fit_stores([fs], "linearsvc", out=tmp_path / "run")
    test = fs.split == "test"
    model = joblib.load(run / "model.joblib")
    pred = model.predict(fs.features[test])
    y = fs.labels[test]
    assert m["evaluation"]["n_eval"] == test.sum() == 60
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    rep = classification_report(y, pred, target_names=fs.classes, output_dict=True)
    for c in fs.classes:
        assert m["per_class"][c]["f1"] == pytest.approx(rep[c]["f1-score"])
        assert m["per_class"][c]["support"] == rep[c]["support"]
    assert np.sum(m["confusion_matrix"]) == 60
    assert m["fit_seconds"] > 0 and m["predict_seconds"] > 0
    assert m["fingerprint"]["backbone"] == "efficientnet_lite0" and m["store"] == str(fs.path.resolve())
    w, h = _png(run / "confusion_matrix.png")
    assert w >= 300 and h >= 250
    _png(run / "misclassified.png", min_side=100)
    for c in fs.classes:
        assert c in (run / "report.txt").read_text()
