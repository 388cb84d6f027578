"""Classification metrics of held-out predictions: accuracy with its standard error, F1s, top-k,
per-class table, confusion matrix."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..stats import binomial_se

TOP_K = 2


def format_accuracy(accuracy: float, n: int) -> str:
    """``"0.930 +- 0.026"``."""
    return f"{accuracy:.3f} +- {binomial_se(accuracy, n):.3f}"


def top_k_accuracy(y_true: np.ndarray, proba: np.ndarray, k: int) -> float:
    """Share of rows whose true class is among the ``k`` most probable."""
    k = min(k, proba.shape[1])
    top = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == np.asarray(y_true)[:, None], axis=1)))


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, classes: Sequence[str], *,
                    top_k: int = TOP_K) -> dict:
    """Accuracy (+- SE), balanced accuracy, macro/weighted F1, top-k, per-class table, confusion matrix."""
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(range(len(classes)))
    n = len(y_true)
    acc = float(np.mean(y_true == y_pred)) if n else float("nan")
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": n,
        "accuracy": acc,
        "accuracy_se": binomial_se(acc, n),
        "accuracy_text": format_accuracy(acc, n),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "top_k": min(top_k, len(classes)),
        "top_k_accuracy": top_k_accuracy(y_true, proba, top_k),
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, c in enumerate(classes)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def row_normalise(cm: np.ndarray) -> np.ndarray:
    """Confusion matrix with each true-class row summing to 1 (empty rows stay 0)."""
    cm = np.asarray(cm, dtype=float)
    sums = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, sums, out=np.zeros_like(cm), where=sums > 0)
