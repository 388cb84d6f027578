"""Which runtime and precision run a network, decided without torch, and the embedder interface they share.

``--runtime auto`` is OpenVINO on CPU (2-3x PyTorch eager on the CPUs measured in
``benchmarks/results``) and PyTorch on a GPU. ``--precision auto`` is bf16 where the
hardware does bf16 natively (a CUDA GPU with bf16, else fp16; a CPU with AVX-512 BF16 or
AMX) and fp32 elsewhere: bf16 is 2x faster on such CPUs, and its features give the same
linear-probe accuracy (``tests/engine/test_precision.py``). The precision is part of the
store's fingerprint, so stores of different precision never mix; ``--precision fp32`` asks
for exactness.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from ..config import RUNTIMES, ExtractCfg
from ..errors import OptionError
from .cpu import gpu_visible, native_bf16
from .loader import Batch


class Embedder:
    """uint8 NHWC batches -> ``(features, logits or None)`` as float32 numpy; one per runtime.

    ``map`` runs a stream of :class:`~featx.engine.loader.Batch` through the network, several at
    once where the runtime can, and yields ``(batch, features, logits)`` in input order.
    """

    runtime = ""
    device = "cpu"  # "cpu", "cuda:0", ...
    precision = "fp32"
    note = ""  # why this runtime and precision (printed in the run summary)

    @property
    def gpu(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def batch_size(self) -> int:
        return 64 if self.gpu else 10

    def prepare(self, images: np.ndarray) -> Any:
        """Called by the loader's threads on each decoded batch (e.g. to pin it)."""
        return images

    def __call__(self, images) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def map(self, batches: Iterable[Batch]) -> Iterator[tuple[Batch, np.ndarray | None, np.ndarray | None]]:
        for b in batches:
            yield (b, *self(b.images)) if b.images is not None else (b, None, None)


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


def build_embedder(cfg: ExtractCfg, weights: str, *, runtime: str = "auto", device: str = "auto",
                   precision: str = "auto", channels_last: bool = True, streams: int | None = None,
                   echo=None) -> Embedder:
    """The network of ``cfg`` with its tap in the chosen runtime, ready for uint8 NHWC batches.

    With OpenVINO, the converted network comes from the model cache (:mod:`featx.engine.openvino`);
    torch is imported only to convert it the first time. ``--runtime auto`` falls back to torch when
    a network cannot be converted, and says so through ``echo``.
    """
    choice = choose(cfg, runtime=runtime, device=device, precision=precision)
    if choice.runtime == "openvino":
        from .openvino import ExportError, load_openvino

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
