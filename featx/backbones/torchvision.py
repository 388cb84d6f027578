"""Builder of torchvision models (``torchvision.models.get_model`` + a weights enum member)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError
from .registry import register_builder


@register_builder("torchvision")
def _torchvision(arch: str, weights: str | None) -> nn.Module:
    from torchvision.models import get_model, get_weight

    model = get_model(arch, weights=None)
    if weights:
        enum = get_weight(weights)
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        try:
            state = enum.get_state_dict(progress=False, check_hash=False)
        except Exception as exc:  # no internet, proxy, corrupt file ...
            raise WeightsError(
                f"--weights imagenet: {weights} not found in {hub} and the download from {enum.url} failed "
                f"({type(exc).__name__}); download that file into {hub} on a machine with internet, or pass "
                "--weights PATH / --weights none") from None
        model.load_state_dict(state)
    return model
