"""The ``pixels`` baseline: the preprocessed image itself as the feature (no network)."""

from __future__ import annotations

from torch import nn

from .registry import register_builder


@register_builder("pixels")
def _pixels(arch: str, weights: str | None) -> nn.Module:
    return nn.Identity()
