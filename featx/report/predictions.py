"""``predictions.csv`` of a run: the held-out predictions, one row per evaluated image.

Columns: ``id``, ``split``, ``label``, ``predicted``, ``confidence`` (the predicted class's probability),
then one ``p:<class>`` column per class, in the model's class order. In a ``cv`` run the predictions are
out-of-fold. ``featx explore`` reads it to open the paintings of a confusion-matrix cell.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .runs import write_csv

FILE = "predictions.csv"
FIXED = ("id", "split", "label", "predicted", "confidence")


def write_predictions(run_dir: Path, ids: Sequence[str], split: Sequence[str], classes: Sequence[str],
                      y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray) -> Path:
    """Write ``run_dir/predictions.csv`` (ids, labels and class columns as text: :func:`~.escape.csv_cell`)."""
    names = [str(c) for c in classes]
    rows = [{"id": str(i), "split": str(s), "label": names[int(t)], "predicted": names[int(p)],
             "confidence": round(float(pr[int(p)]), 6),
             **{f"p:{c}": round(float(v), 6) for c, v in zip(names, pr)}}
            for i, s, t, p, pr in zip(ids, split, y_true, y_pred, proba)]
    return write_csv(run_dir / FILE, rows, columns=[*FIXED, *(f"p:{c}" for c in names)])


@dataclass
class Predictions:
    """A run's held-out predictions, read back: ids, the true and predicted class indices, probabilities."""

    ids: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray


def read_predictions(path: Path, classes: Sequence[str], known_ids: set[str] | None = None) -> Predictions | None:
    """``predictions.csv`` back as arrays (None when the file is missing or not of this form).

    A text cell that :func:`~.escape.csv_cell` wrote with a leading ``'`` gets it back off when the id without it
    is one of ``known_ids`` (and the label or predicted class without it is a class).
    """
    index = {str(c): i for i, c in enumerate(classes)}

    def unquote(text: str, known) -> str:
        return text[1:] if text not in known and text.startswith("'") and text[1:] in known else text

    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            reader = csv.reader(fh)
            head = next(reader, None)
            if head is None or tuple(head[:len(FIXED)]) != FIXED or len(head) != len(FIXED) + len(classes):
                return None
            ids, t, p, pr = [], [], [], []
            for row in reader:
                label, pred = unquote(row[2], index), unquote(row[3], index)
                if label not in index or pred not in index:
                    return None
                ids.append(unquote(row[0], known_ids or set()))
                t.append(index[label])
                p.append(index[pred])
                pr.append([float(v) for v in row[len(FIXED):]])
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, IndexError):
        return None
    k = len(classes)
    return Predictions(ids, np.asarray(t, np.int64), np.asarray(p, np.int64),
                       np.asarray(pr, np.float64).reshape(len(ids), k))
