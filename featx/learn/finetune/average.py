"""Weight averaging: an exponential moving average per step (``--average ema``) or the plain mean of the
weights at the end of each epoch of the second half of the schedule (``--average swa``).

The average covers every floating tensor of the model's state dict (BatchNorm statistics too, so the
averaged network needs no extra pass over the data); evaluation and ``best.pt`` use it.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """The running average of ``model``'s floating state; :meth:`swapped` evaluates with it."""

    def __init__(self, model: nn.Module, kind: str, decay: float, epochs: int):
        self.model, self.kind, self.decay = model, kind, decay
        self.swa_start = epochs // 2  # 0-based epoch from which SWA averages (the second half)
        self.avg: dict[str, torch.Tensor] = {}
        self.n = 0

    def _floating(self):
        return [(k, v) for k, v in self.model.state_dict().items() if v.is_floating_point()]

    @torch.no_grad()
    def _update(self, weight: float) -> None:
        if not self.avg:
            self.avg = {k: v.detach().clone() for k, v in self._floating()}
        else:
            for k, v in self._floating():
                self.avg[k].mul_(1 - weight).add_(v.detach(), alpha=weight)
        self.n += 1

    def after_step(self) -> None:
        if self.kind == "ema":
            self._update(1 - self.decay)

    def after_epoch(self, epoch: int) -> None:
        if self.kind == "swa" and epoch >= self.swa_start:
            self._update(1.0 / (self.n + 1))

    @property
    def ready(self) -> bool:
        return bool(self.avg)

    @contextmanager
    def swapped(self):
        """The model holds the averaged weights inside the block (the raw ones again after)."""
        if not self.avg:
            yield
            return
        raw = {k: v.detach().clone() for k, v in self._floating()}
        self.model.load_state_dict(self.avg, strict=False)
        try:
            yield
        finally:
            self.model.load_state_dict(raw, strict=False)

    def state_dict(self) -> dict:
        return {"avg": self.avg, "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        self.avg = {k: v.clone() for k, v in state["avg"].items()}
        self.n = int(state["n"])
