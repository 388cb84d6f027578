"""Tap a layer of any ``nn.Module`` with a forward hook and pool it to a vector.

A tap point is a module path (its output) or ``module:in`` (its input, e.g. the
pre-logits input of the classifier). When logits are not wanted the forward pass
stops at the tap, so layers after it cost nothing. Capture is per thread, so one
model can serve several threads at once (CPU extraction runs parallel streams).
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DataCfg
from ..errors import BackboneError


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """``model``'s sub-module at dotted ``path`` ("" is the model itself)."""
    if not path:
        return model
    modules = dict(model.named_modules())
    if path not in modules:
        raise BackboneError(f"--layer: model has no module {path!r}; list them with `featx backbones nodes NAME`")
    return modules[path]


class _Stop(Exception):
    pass


def pool_features(t: torch.Tensor, pool: str) -> torch.Tensor:
    """Pool a batch of maps (N,C,H,W), tokens (N,L,D) or vectors (N,D) to (N, dim)."""
    if t.ndim == 2:
        if pool not in ("none", "flatten", "avg"):
            raise BackboneError(f"--pool {pool}: this layer is already a vector; use --pool none")
        return t
    if pool == "flatten" or pool == "none":
        return t.flatten(1)
    if t.ndim == 3:  # transformer tokens
        if pool == "avg":
            return t.mean(1)
        if pool == "max":
            return t.amax(1)
        raise BackboneError(f"--pool {pool}: not defined for token outputs; use avg, max or flatten")
    if pool == "avg":
        return t.mean((2, 3))
    if pool == "max":
        return t.amax((2, 3))
    if pool == "gem":  # generalised mean, p = 3 (Radenovic et al. 2018)
        return t.float().clamp(min=1e-6).pow(3).mean((2, 3)).pow(1.0 / 3)
    if pool == "spp":  # spatial pyramid: max over 1x1, 2x2, 3x3 grids (He et al. 2014)
        return torch.cat([F.adaptive_max_pool2d(t, k).flatten(1) for k in (1, 2, 3)], 1)
    raise BackboneError(f"--pool {pool!r}: use avg, max, gem, flatten, spp or none")


class TappedModel(nn.Module):
    """``forward(x) -> (pooled features, logits or None)`` for a tap point of ``model``."""

    def __init__(self, model: nn.Module, module: str, pool: str, with_logits: bool = False):
        super().__init__()
        self.model = model.eval()
        self.pool = pool
        self.with_logits = with_logits
        path, _, side = module.partition(":")
        self._side = side
        self._local = threading.local()  # per-thread: active flag and captured tensor
        resolve_module(model, path).register_forward_hook(self._hook)

    def _hook(self, mod, inp, out):
        local = self._local
        if not getattr(local, "active", False):  # another wrapper's or thread's forward
            return
        local.captured = inp[0] if self._side == "in" else out
        if not self.with_logits:
            raise _Stop

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        local = self._local
        local.active, local.captured = True, None
        logits = None
        try:
            logits = self.model(x)
        except _Stop:
            pass
        finally:
            local.active = False
        t, local.captured = local.captured, None
        if t is None:
            raise BackboneError("the tapped layer was not reached by the forward pass; pick another --layer")
        return pool_features(t, self.pool), logits


class Normalize(nn.Module):
    """uint8 NHWC images -> float NCHW normalised with the backbone's mean and std (channels_last memory,
    which is what permuting NHWC gives, unless ``channels_last`` is False)."""

    def __init__(self, data: DataCfg, channels_last: bool = True):
        super().__init__()
        self.channels_last = channels_last
        self.register_buffer("mean", torch.tensor(data.mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(data.std).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.permute(0, 3, 1, 2).float() - self.mean) / self.std
        return x if self.channels_last else x.contiguous()


class FeatureNet(nn.Module):
    """uint8 NHWC images -> ``(features, logits or None)``: normalisation, the tapped network and test-time
    augmentation in one module. Runs under torch, and is what gets exported to OpenVINO."""

    def __init__(self, tapped: TappedModel, data: DataCfg, hflip: bool = False, channels_last: bool = True):
        super().__init__()
        self.normalize = Normalize(data, channels_last)
        self.tapped = tapped
        self.hflip = hflip  # mean of the image's and its mirror image's features

    @property
    def channels_last(self) -> bool:
        return self.normalize.channels_last

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.normalize(images)
        feats, logits = self.tapped(x)
        if self.hflip:
            f2, l2 = self.tapped(x.flip(3))
            feats = (feats.float() + f2.float()) / 2
            logits = None if logits is None else (logits.float() + l2.float()) / 2
        return feats.float(), None if logits is None else logits.float()
