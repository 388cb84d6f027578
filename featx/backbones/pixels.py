"""The ``pixels`` baseline: the preprocessed image itself as the feature (no network)."""

from __future__ import annotations

from torch import nn

from .weights_ref import WeightsRef


def build_pixels(arch: str, weights: WeightsRef) -> nn.Module:
    return nn.Identity()
