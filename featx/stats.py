"""Small statistics shared by classifiers and analyses: label codes, fold counts, standard errors, baselines.

numpy only; no other featx module.
"""

from __future__ import annotations

import math

import numpy as np


def encode_labels(y) -> tuple[np.ndarray, int]:
    """Labels as codes 0..C-1 (only the classes that occur) and C."""
    _, inv = np.unique(np.asarray(y), return_inverse=True)
    return inv.ravel(), int(inv.max()) + 1 if inv.size else 0


def n_folds(y, cv: int) -> int:
    """Stratified folds usable on ``y``: ``cv``, or fewer when the rarest class has fewer rows."""
    counts = np.bincount(encode_labels(y)[0])
    return int(min(cv, counts.min())) if counts.size else 0


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on ``n`` independent images."""
    return math.sqrt(accuracy * (1 - accuracy) / n) if n else float("nan")


def majority_accuracy(y_train, y_eval=None) -> float:
    """Accuracy of always predicting the most frequent class of ``y_train`` on ``y_eval`` (default:
    ``y_train`` itself), the chance baseline."""
    y_train = np.asarray(y_train)
    y_eval = y_train if y_eval is None else np.asarray(y_eval)
    if not len(y_eval):
        return float("nan")
    values, counts = np.unique(y_train, return_counts=True)
    return float(np.mean(y_eval == values[np.argmax(counts)]))
