"""predictions.csv: written by featx fit, read back by featx explore, hostile ids and labels included."""

from __future__ import annotations

import numpy as np
import pytest

from featx.report.predictions import read_predictions, write_predictions

IDS = ["=cmd|' /C calc'!A0", "-1.jpg", "plain.jpg", "'quoted.jpg", "a,b\n\"c\".jpg"]
CLASSES = ["=1+1", "<b>bold</b>", "-neg"]


def test_predictions_round_trip_with_formula_like_ids_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=len(IDS))
    y_true = np.array([0, 1, 2, 0, 1])
    y_pred = proba.argmax(axis=1)
    path = write_predictions(tmp_path, IDS, ["test"] * 5, CLASSES, y_true, y_pred, proba)
    text = path.read_text(encoding="utf-8")
    assert "\n=" not in text and ",=" not in text  # no cell a spreadsheet runs as a formula
    got = read_predictions(path, CLASSES, set(IDS))
    assert got.ids == IDS
    assert got.y_true.tolist() == y_true.tolist() and got.y_pred.tolist() == y_pred.tolist()
    assert got.proba == pytest.approx(proba, abs=1e-6)


def test_a_file_of_other_classes_or_form_is_not_read(tmp_path):
    path = write_predictions(tmp_path, ["a.jpg"], ["test"], ["x", "y"], np.array([0]), np.array([1]),
                             np.array([[0.2, 0.8]]))
    assert read_predictions(path, ["x", "y", "z"]) is None
    assert read_predictions(path, ["p", "q"]) is None
    assert read_predictions(tmp_path / "missing.csv", ["x", "y"]) is None
    empty = write_predictions(tmp_path / "e", [], [], ["x", "y"], np.array([]), np.array([]), np.zeros((0, 2)))
    assert read_predictions(empty, ["x", "y"]).ids == []
