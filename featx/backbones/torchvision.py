"""Builder of torchvision models (``torchvision.models.get_model`` + a weights enum member)."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError
from .weights_ref import WeightsRef


def build_torchvision(arch: str, weights: WeightsRef) -> nn.Module:
    """``arch`` with ``weights`` (random init unless they are a torchvision enum member)."""
    from torchvision.models import get_model, get_weight

    model = get_model(arch, weights=None)
    if weights.kind == "torchvision":
        enum = get_weight(weights.name)
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        try:
            # weights_only: torch.hub passes weights_only=False by default, which would unpickle whatever
            # file sits under that name in the hub cache; torchvision's weights are plain state dicts
            state = enum.get_state_dict(progress=False, check_hash=False, weights_only=True)
        except pickle.UnpicklingError:  # weights_only refused the cached file: nothing of it ran
            raise WeightsError(
                f"--weights imagenet: {hub / Path(enum.url).name} is not a plain state dict (it holds Python "
                "objects that could run code) and was refused; delete it and download it again from "
                f"{enum.url}") from None
        except Exception as exc:  # no internet, proxy, corrupt file ...
            raise WeightsError(
                f"--weights imagenet: {weights.name} not found in {hub} and the download from {enum.url} failed "
                f"({type(exc).__name__}); download that file into {hub} on a machine with internet, or pass "
                "--weights PATH / --weights none") from None
        model.load_state_dict(state)
    return model
