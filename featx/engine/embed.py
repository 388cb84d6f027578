"""The PyTorch runtime: a :class:`~featx.backbones.tap.FeatureNet` on a device, fed uint8 NHWC batches.

The loader's threads pin each batch for a GPU; the main thread copies it ``non_blocking``,
normalises it on the device and runs the network under ``torch.inference_mode`` in
channels_last layout, with bf16/fp16 autocast where asked. On CPU several batches run at
once in threads (:meth:`TorchEmbedder.map`). Shared by extraction, prediction and ``ImageEmbedder``.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np
import torch

from ..backbones.build import create_model
from ..backbones.registry import get_cfg
from ..backbones.tap import FeatureNet, TappedModel
from ..backbones.weights_ref import WeightsRef
from ..config import ExtractCfg, device_problem
from ..errors import OptionError
from .base import Embedder
from .cpu import usable_cpus
from .loader import Batch

PRECISION_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_streams(device: torch.device) -> int:
    """Parallel model streams: on CPU one per core (up to 4) beats one stream with intra-op threads."""
    return 1 if device.type != "cpu" else max(1, min(4, usable_cpus()))


def resolve_device(device: str) -> torch.device:
    """``auto`` = CUDA if visible else CPU; ``auto:N`` (a torchrun local rank) = ``cuda:N`` if visible else CPU."""
    if device == "auto" or device.startswith("auto:"):
        if not torch.cuda.is_available():
            return torch.device("cpu")
        local = int(device.partition(":")[2] or 0) % torch.cuda.device_count()
        return torch.device(f"cuda:{local}" if device != "auto" else "cuda")
    problem = device_problem(device)
    if problem:
        raise OptionError(f"--device {problem}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError("--device cuda: no CUDA GPU is visible to torch; use --device cpu or auto")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for training (None means fp32): ``auto`` is bf16/fp16 on CUDA and fp32 on CPU."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision in PRECISION_DTYPES:
        return PRECISION_DTYPES[precision]
    raise OptionError(f"--precision {precision!r}: use auto, fp32, bf16 or fp16")


def precision_name(dtype: torch.dtype | None) -> str:
    """The fingerprint's name of an autocast dtype (None: fp32)."""
    return next(name for name, d in PRECISION_DTYPES.items() if d == dtype)


class TorchEmbedder(Embedder):
    """A :class:`FeatureNet` on a torch device, under autocast when ``precision`` is not fp32."""

    runtime = "torch"

    def __init__(self, net: FeatureNet, device: torch.device, *, precision: torch.dtype | None = None,
                 streams: int | None = None):
        self.torch_device = device
        self.device = str(device) if device.type != "cuda" else f"cuda:{device.index or 0}"
        self.autocast = precision
        self.precision = precision_name(precision)
        self.streams = streams or default_streams(device)
        self.net = net.to(device)
        if net.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def prepare(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images)
        return x.pin_memory() if self.gpu else x

    @torch.inference_mode()
    def __call__(self, images) -> tuple[np.ndarray, np.ndarray | None]:
        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        x = x.to(self.torch_device, non_blocking=True)
        if self.autocast is not None:
            with torch.autocast(self.torch_device.type, dtype=self.autocast):
                feats, logits = self.net(x)
        else:
            feats, logits = self.net(x)
        return feats.cpu().numpy(), None if logits is None else logits.cpu().numpy()

    def map(self, batches: Iterable[Batch]) -> Iterator[tuple[Batch, np.ndarray | None, np.ndarray | None]]:
        """With ``streams > 1`` (CPU), that many batches run at once in threads with one intra-op thread
        each (torch releases the GIL): on 2 cores ~1.3x one batch with two intra-op threads."""
        if self.streams <= 1:
            yield from super().map(batches)
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads // self.streams))
        pending: deque = deque()
        try:
            with ThreadPoolExecutor(self.streams, thread_name_prefix="featx-embed") as pool:
                for b in batches:
                    pending.append((b, pool.submit(self, b.images) if b.images is not None else None))
                    while len(pending) > self.streams:
                        yield _ready(*pending.popleft())
                while pending:
                    yield _ready(*pending.popleft())
        finally:
            torch.set_num_threads(threads)


def _ready(batch: Batch, fut):
    feats, logits = fut.result() if fut is not None else (None, None)
    return batch, feats, logits


class EnsembleFeatureNet(torch.nn.Module):
    """The members of a fine-tuned ensemble side by side: their features concatenated in the manifest's order
    (a linear model on them can weigh, or average, every member's own head); with logits, the log of the mean
    of the members' softmax, so its softmax is the ensemble's probability (as ``featx predict`` gives)."""

    def __init__(self, members: list[FeatureNet]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    @property
    def channels_last(self) -> bool:
        return self.members[0].channels_last

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        outs = [m(images) for m in self.members]
        feats = torch.cat([f for f, _ in outs], 1)
        if outs[0][1] is None:
            return feats, None
        proba = torch.stack([torch.softmax(z, 1) for _, z in outs]).mean(0)
        return feats, torch.log(proba.clamp_min(1e-30))


def feature_net(cfg: ExtractCfg, weights: str | WeightsRef, *, channels_last: bool = True) -> FeatureNet:
    """The eval-mode network of ``cfg`` with its tap, normalisation and test-time augmentation (an ensemble's:
    :class:`EnsembleFeatureNet`)."""
    ref = weights if isinstance(weights, WeightsRef) else WeightsRef.parse(weights, get_cfg(cfg.backbone))
    if ref.kind == "ensemble":
        return EnsembleFeatureNet([feature_net(cfg, m, channels_last=channels_last) for m in ref.members]).eval()
    model = create_model(get_cfg(cfg.backbone), ref, logits=cfg.with_logits)
    tapped = TappedModel(model, cfg.module, cfg.pool, with_logits=cfg.with_logits)
    return FeatureNet(tapped, cfg.data, hflip=cfg.tta == "hflip", channels_last=channels_last).eval()


def build_torch_embedder(cfg: ExtractCfg, weights: str | WeightsRef, *, device: str = "auto", precision: str = "auto",
                         channels_last: bool = True, streams: int | None = None) -> TorchEmbedder:
    """``cfg``'s network under PyTorch; ``precision`` auto is bf16/fp16 on CUDA, fp32 on CPU."""
    dev = resolve_device(device)
    return TorchEmbedder(feature_net(cfg, weights, channels_last=channels_last), dev,
                         precision=resolve_precision(precision, dev), streams=streams)
