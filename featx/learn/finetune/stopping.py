"""Early stopping on the validation macro F1: the best score, its epoch, and the epochs since."""

from __future__ import annotations

import math

MIN_GAIN = 1e-9  # a score better than the best by at most this is no improvement


class EarlyStopping:
    """The best epoch so far; :attr:`should_stop` after ``patience`` epochs without a better score (0: never)."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best, self.best_epoch, self.bad = -math.inf, -1, 0

    @property
    def should_stop(self) -> bool:
        return bool(self.patience) and self.bad >= self.patience

    def improved(self, score: float, epoch: int) -> bool:
        """Record the 0-based ``epoch``'s score; whether it is the new best."""
        if score > self.best + MIN_GAIN:
            self.best, self.best_epoch, self.bad = score, epoch, 0
            return True
        self.bad += 1
        return False

    def summary(self) -> dict:
        """What every checkpoint records of the best epoch (``val_macro_f1`` is None before the first)."""
        return {"best_epoch": self.best_epoch, "val_macro_f1": self.best if math.isfinite(self.best) else None}

    def resume(self, ck: dict) -> None:
        """Continue from a full checkpoint: its :meth:`summary` and ``bad_epochs``."""
        self.best_epoch, self.bad = int(ck["best_epoch"]), int(ck["bad_epochs"])
        self.best = -math.inf if ck["val_macro_f1"] is None else float(ck["val_macro_f1"])
