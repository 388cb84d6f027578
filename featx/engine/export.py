"""Convert a tapped network from PyTorch to OpenVINO IR (imports torch; run once per network).

The exported graph takes uint8 NHWC images of any batch size and returns the pooled
features (and the logits when the fingerprint asks for them): exactly what
:class:`~featx.backbones.tap.FeatureNet` computes. It is written to a staging folder beside
the cache entry and renamed into place, so a killed conversion leaves nothing half-written
and concurrent processes (array tasks) converting the same network all end with one entry.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from pathlib import Path

import torch
from torch import nn

from ..backbones.tap import FeatureNet
from ..backbones.weights_ref import WeightsRef
from ..config import ExtractCfg
from .embed import feature_net
from .openvino import EXPORT_VERSION, ExportError, openvino_version


class _Tensors(nn.Module):
    """A FeatureNet that returns tensors only (features, or features and logits), as tracing needs."""

    def __init__(self, net: FeatureNet, with_logits: bool):
        super().__init__()
        self.net, self.with_logits = net, with_logits

    def forward(self, images: torch.Tensor):
        feats, logits = self.net(images)
        return (feats, logits) if self.with_logits else feats


def export_openvino(cfg: ExtractCfg, weights: str | WeightsRef, dest: Path) -> None:
    """Convert ``cfg``'s network (built with ``weights``) to ``dest/model.xml``, ``model.bin``, ``export.json``."""
    import openvino as ov

    net = _Tensors(feature_net(cfg, weights, channels_last=False), cfg.with_logits).eval()
    s = cfg.data.input_size
    example = torch.zeros(2, s, s, 3, dtype=torch.uint8)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracing's deprecation and shape warnings: not the user's concern
            model = ov.convert_model(net, example_input=example, input=[([-1, s, s, 3], ov.Type.u8)])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{type(exc).__name__}: {first[:200]}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = dest.parent / f".{dest.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        ov.save_model(model, str(stage / "model.xml"), compress_to_fp16=False)
        meta = {"fingerprint": cfg.to_dict(), "export_version": EXPORT_VERSION, "openvino": openvino_version(),
                "torch": torch.__version__, "outputs": ["features", "logits"] if cfg.with_logits else ["features"]}
        (stage / "export.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(stage, dest)
        except OSError:
            if not (dest / "export.json").is_file():  # a broken entry is in the way: replace it
                shutil.rmtree(dest, ignore_errors=True)
                os.rename(stage, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
