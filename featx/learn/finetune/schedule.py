"""Learning rates: linear warm-up, then cosine decay (per step), plateau reduction (per epoch) or constant.

The schedule is a scale applied to each parameter group's base rate (the head's ``--lr`` and the
backbone's ``--lr x --backbone-lr``); its state is plain numbers, so checkpoints load with
``torch.load(weights_only=True)`` and ``--resume`` continues it exactly.
"""

from __future__ import annotations

import math


class Schedule:
    """Scale of the base learning rates at each optimiser step."""

    def __init__(self, kind: str, steps_per_epoch: int, epochs: int, warmup_epochs: int, *, factor: float = 0.5,
                 patience: int = 2, floor: float = 0.01):
        self.kind, self.steps_per_epoch, self.epochs = kind, max(1, steps_per_epoch), epochs
        self.warmup = warmup_epochs * self.steps_per_epoch
        self.factor, self.patience, self.floor = factor, patience, floor
        self.plateau_scale, self.best, self.bad = 1.0, -math.inf, 0

    def scale(self, step: int) -> float:
        """Scale at global step ``step`` (0-based)."""
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if self.kind == "cosine":
            total = max(1, self.epochs * self.steps_per_epoch - self.warmup)
            t = min(1.0, (step - self.warmup) / total)
            return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * t))
        if self.kind == "plateau":
            return self.plateau_scale
        return 1.0

    def apply(self, optimizer, step: int) -> None:
        s = self.scale(step)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * s

    def end_epoch(self, metric: float, epoch: int) -> bool:
        """Record the epoch's validation metric; True when the plateau rule lowered the rate."""
        if self.kind != "plateau":
            return False
        if metric > self.best + 1e-4:
            self.best, self.bad = metric, 0
            return False
        self.bad += 1
        if self.bad > self.patience and (epoch + 1) * self.steps_per_epoch > self.warmup:
            self.plateau_scale = max(self.floor, self.plateau_scale * self.factor)
            self.bad = 0
            return True
        return False

    def state_dict(self) -> dict:
        return {"plateau_scale": self.plateau_scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.plateau_scale, self.best, self.bad = float(state["plateau_scale"]), float(state["best"]), int(state["bad"])
