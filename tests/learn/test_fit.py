"""featx.learn.fit: stores -> fitted classifiers -> run folders and leaderboard."""

from __future__ import annotations

import csv
import dataclasses
import json
import re

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, classification_report, f1_score

import _synth
from helpers import assert_png
from featx.errors import ClassifierError
from featx.learn import fit
from featx.learn.predict import load_model
from featx.report import metrics
from featx.report.predictions import read_predictions
from featx.store.reader import load_features


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
    run, entries = fit.fit_stores([fs], fit.FitOptions(clf="softmax", out=tmp_path / "run"), echo=lines.append)
    assert run == tmp_path / "run" and len(entries) == 1
    names = {p.name for p in run.iterdir()}
    assert names == {"metrics.json", "report.txt", "confusion_matrix.png", "misclassified.png", "model.skops",
                     "model.json", "predictions.csv"}
    m = json.loads((run / "metrics.json").read_text())
    test = split == "test"
    model = load_model(run / "model.skops").model
    pred = model.predict(X[test])
    held = read_predictions(run / "predictions.csv", ["a", "b"])
    assert held.ids == [str(i) for i in np.asarray(ids)[test]]
    assert held.y_pred.tolist() == pred.tolist() and held.y_true.tolist() == y[test].tolist()
    assert held.proba == pytest.approx(model.predict_proba(X[test]), abs=1e-6)
    assert m["accuracy"] == pytest.approx(accuracy_score(y[test], pred))
    assert m["accuracy_text"] == metrics.format_accuracy(m["accuracy"], int(test.sum()))
    assert m["store"] == str(path.resolve()) and m["fingerprint"]["backbone"] == "synthetic"
    assert np.sum(m["confusion_matrix"]) == test.sum()
    assert "softmax" in lines[0] and m["accuracy_text"] in lines[0]
    sidecar = json.loads((run / "model.json").read_text())
    assert sidecar["classes"] == ["a", "b"] and sidecar["fingerprints"] == [fs.fingerprint]
    assert "precision" in (run / "report.txt").read_text()


@pytest.mark.parametrize("option, message", [
    ({"clf": "forest"}, "unknown classifier 'forest'; choose from softmax, linearsvc, mlp, knn, majority or all"),
    ({"clf": " , "}, "no classifier given"),
    ({"preprocess": "zca"}, "unknown preprocessing 'zca'"),
    ({"class_weight": "inverse"}, "unknown class weight 'inverse'; use none or balanced"),
    ({"cv": 1}, "--cv 1: need at least 2 folds"),
])
def test_fit_options_are_checked_once_as_they_are_built(option, message):
    with pytest.raises(ClassifierError, match=re.escape(message)):
        fit.FitOptions(**option)


def test_fit_options_resolve_classifiers_and_record_settings():
    o = fit.FitOptions(clf="all,majority", preprocess="l2+pca:4", class_weight="balanced", cv=3, seed=7)
    assert o.classifiers == ["softmax", "linearsvc", "mlp", "knn", "majority"]
    assert o.settings == {"preprocess": "l2+pca:4", "class_weight": "balanced", "search": False, "cv": 3, "seed": 7}
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.seed = 1


def test_check_same_dataset(tmp_path):
    a = load_features(_synth.store(tmp_path / "a.h5"))
    b = load_features(_synth.store(tmp_path / "b.h5", data_root="/elsewhere"))
    with pytest.raises(ClassifierError, match="not features of the same dataset"):
        fit.check_same_dataset([a, b])
    X, y, split, ids = _synth.blobs()
    c = load_features(_synth.store(tmp_path / "c.h5", split=np.where(split == "test", "val", split)))
    with pytest.raises(ClassifierError, match="split differently"):
        fit.check_same_dataset([a, c])
    fit.check_same_dataset([a, load_features(_synth.store(tmp_path / "d.h5", backbone="other"))])


def test_leaderboard_table_csv_markdown(tmp_path):
    a = load_features(_synth.store(tmp_path / "good.h5", backbone="good", weights="w1", sep=4.0))
    b = load_features(_synth.store(tmp_path / "bad.h5", backbone="bad", weights="none", sep=0.3, seed=0))
    lines = []
    run, entries = fit.fit_stores([b, a], fit.FitOptions(clf="softmax,knn", runs_dir=tmp_path / "runs"),
                                  echo=lines.append)
    rows = list(csv.DictReader(open(run / "leaderboard.csv")))
    assert len(rows) == 4 and [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    accs = [float(r["accuracy"]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    assert {r["backbone"] for r in rows[:2]} == {"good"} and {r["weights"] for r in rows[2:]} == {"none"}
    md = (run / "leaderboard.md").read_text().splitlines()
    assert md[0].startswith("| # | store | backbone") and len(md) == 6
    table = "\n".join(lines)
    assert "accuracy" in table and "chance" in table
    assert all((e[1] / "model.skops").exists() for e in entries)


def test_write_run_misclassified_uses_image_paths(tmp_path):
    """Wrong predictions appear on the contact sheet from the original image files."""
    X, y, split, ids = _synth.blobs((30, 30), dim=4, sep=0.1)
    root = tmp_path / "imgs"
    for i in ids:
        (root / i).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (0, 200, 0)).save(root / i, format="PNG")
    fs = load_features(_synth.store(tmp_path / "s.h5", classes=("a", "b"), X=X, y=y, split=split, ids=ids,
                                    data_root=root))
    run, (entry,) = fit.fit_stores([fs], fit.FitOptions(clf="knn", out=tmp_path / "r"))
    m = entry[0]
    assert m["accuracy"] < 1.0
    with Image.open(run / "misclassified.png") as im:
        px = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert ((px[:, 1] > 150) & (px[:, 0] < 50)).any()


# ---------------------------------------------------------------- real features


@pytest.mark.slow
def test_real_monet_run_folder_consistent_with_sklearn(monet_lite0_store, tmp_path):
    fs = load_features(monet_lite0_store)
    run, ((m, _),) = fit.fit_stores([fs], fit.FitOptions(clf="linearsvc", out=tmp_path / "run"))
    test = fs.split == "test"
    model = load_model(run / "model.skops").model
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
    w, h = assert_png(run / "confusion_matrix.png")
    assert w >= 300 and h >= 250
    assert_png(run / "misclassified.png", min_side=100)
    for c in fs.classes:
        assert c in (run / "report.txt").read_text()
