"""Which runtime and precision run a network, decided without torch, and the embedder built in it.

``--runtime auto`` is OpenVINO on CPU (2-3x PyTorch eager on the CPUs measured in
``benchmarks/results``) and PyTorch on a GPU. ``--precision auto`` is bf16 where the
hardware does bf16 natively (a CUDA GPU with bf16, else fp16; a CPU with AVX-512 BF16 or
AMX) and fp32 elsewhere: bf16 is 2x faster on such CPUs, and its features give the same
linear-probe accuracy (``tests/engine/test_precision.py``). The precision is part of the
store's fingerprint, so stores of different precision never mix; ``--precision fp32`` asks
for exactness. This module stands above the runtimes (:mod:`~featx.engine.embed`,
:mod:`~featx.engine.openvino`, the conversion in :mod:`~featx.engine.export`) and imports
torch only when it builds a PyTorch network or converts one.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..backbones.weights_ref import WeightsRef
from ..config import RUNTIMES, ExtractCfg
from ..errors import OptionError
from .base import Embedder
from .cpu import gpu_visible, native_bf16
from .openvino import ExportError, OpenVINOEmbedder, cached_model, model_dir


def blank_batch(cfg: ExtractCfg) -> np.ndarray:
    """One black uint8 NHWC image at the input size (probes the feature width)."""
    s = cfg.data.input_size
    return np.zeros((1, s, s, 3), np.uint8)


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def on_cpu(device: str) -> bool:
    """``device`` will be the CPU (``auto`` without a visible GPU), judged without importing torch."""
    return device == "cpu" or (device.startswith("auto") and not gpu_visible())


@dataclass(frozen=True)
class Choice:
    """The runtime and (on CPU) precision a request resolves to, and why."""

    runtime: str
    precision: str  # "auto" left for torch to resolve on a GPU
    note: str


def choose(cfg: ExtractCfg, *, runtime: str = "auto", device: str = "auto", precision: str = "auto") -> Choice:
    """Resolve ``--runtime`` and ``--precision`` for ``cfg`` (one-line OptionError on a bad combination)."""
    if runtime not in RUNTIMES:
        raise OptionError(f"--runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    cpu = on_cpu(device)
    notes = []
    if precision == "auto" and cpu:
        flag = native_bf16() if cfg.source != "pixels" else None
        precision = "bf16" if flag else "fp32"
        notes.append(f"precision auto: native bf16 on this CPU ({flag})" if flag else
                     "precision auto: no native bf16 on this CPU")
    if runtime == "auto":
        native = precision == "fp32" or (precision == "bf16" and native_bf16())
        if cpu and cfg.source != "pixels" and native and openvino_installed():
            runtime = "openvino"
            notes.insert(0, "runtime auto: OpenVINO on CPU")
        else:
            runtime = "torch"
    elif runtime == "openvino":
        if not openvino_installed():
            raise OptionError("--runtime openvino: the openvino package is not installed; `pip install openvino` "
                              "or use --runtime torch")
        if not cpu:
            raise OptionError(f"--runtime openvino runs on the CPU; with --device {device} use --runtime torch "
                              "(or --device cpu)")
    return Choice(runtime, precision, "; ".join(notes))


def build_embedder(cfg: ExtractCfg, weights: str | WeightsRef, *, runtime: str = "auto", device: str = "auto",
                   precision: str = "auto", channels_last: bool = True, streams: int | None = None,
                   echo=None) -> Embedder:
    """The network of ``cfg`` with its tap in the chosen runtime, ready for uint8 NHWC batches.

    With OpenVINO, the converted network comes from the model cache (:func:`load_openvino`); torch is
    imported only to convert it the first time. ``--runtime auto`` falls back to torch when
    a network cannot be converted, and says so through ``echo``.
    """
    choice = choose(cfg, runtime=runtime, device=device, precision=precision)
    if choice.runtime == "openvino":
        try:
            embed = load_openvino(cfg, weights, precision=choice.precision, streams=streams, echo=echo)
        except ExportError as exc:
            if runtime != "auto":
                raise OptionError(f"--runtime openvino: {exc}; use --runtime torch") from None
            if echo:
                echo(f"OpenVINO could not convert {cfg.backbone}:{cfg.layer} ({exc}); running it with PyTorch")
            choice = Choice("torch", choice.precision, choice.note.replace("OpenVINO on CPU", "PyTorch (not convertible)"))
        else:
            embed.note = choice.note
            return embed
    from .embed import build_torch_embedder

    embed = build_torch_embedder(cfg, weights, device=device, precision=choice.precision,
                                 channels_last=channels_last, streams=streams)
    embed.note = choice.note
    return embed


def ensure_model(cfg: ExtractCfg, weights: str | WeightsRef, *, echo: Callable[[str], None] | None = None) -> Path:
    """The cached IR of ``cfg``'s network, converting it first if needed (imports torch then)."""
    xml = cached_model(cfg)
    if xml is not None:
        return xml
    from .export import export_openvino  # torch

    d = model_dir(cfg)
    if echo:
        echo(f"converting {cfg.backbone}:{cfg.layer} to OpenVINO (once) -> {d}")
    export_openvino(cfg, weights, d)
    return d / "model.xml"


def load_openvino(cfg: ExtractCfg, weights: str | WeightsRef, *, precision: str, streams: int | None = None,
                  echo: Callable[[str], None] | None = None) -> OpenVINOEmbedder:
    """``cfg``'s network compiled from the model cache (converted first if needed). A cached entry that
    OpenVINO cannot read is removed and converted again; an :class:`ExportError` means no conversion works."""
    try:
        return OpenVINOEmbedder(ensure_model(cfg, weights, echo=echo), precision=precision, streams=streams)
    except ExportError:
        shutil.rmtree(model_dir(cfg), ignore_errors=True)
        return OpenVINOEmbedder(ensure_model(cfg, weights, echo=echo), precision=precision, streams=streams)
