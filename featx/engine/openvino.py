"""The OpenVINO runtime (CPU) and its model cache, without torch.

A tapped network (normalisation, layer, pooling, test-time augmentation: a
:class:`~featx.backbones.tap.FeatureNet`) is converted once from PyTorch with
``openvino.convert_model`` (:mod:`featx.engine.export`, the only step that imports torch)
and kept as OpenVINO IR under ``<cache>/models/<backbone>--<layer>-<pool>--<key>/``; the key
hashes everything in the fingerprint that defines the network (not the precision or storage
dtype, which are compile-time and write-time choices), the export format and OpenVINO's
version. Later runs read the IR and compile it for the CPU in well under a second
(:func:`featx.engine.runtime.load_openvino` reads the cache and converts on a miss).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .. import env
from ..config import ExtractCfg, cache_dir
from ..errors import OptionError
from .base import Embedder
from .cpu import usable_cpus
from .loader import Batch

EXPORT_VERSION = 1
"""Bumped when the exported graph changes (its inputs, outputs or what it computes)."""

OV_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


class ExportError(Exception):
    """A network could not be converted to OpenVINO."""


def models_dir() -> Path:
    """Home of converted networks: ``$FEATX_MODELS``, else ``<cache>/models``."""
    return Path(env.MODELS.get() or cache_dir() / "models")


def openvino_version() -> str:
    from openvino import get_version

    return get_version().split("-")[0]


def model_key(cfg: ExtractCfg) -> str:
    """Hash of what defines the converted network: the fingerprint less precision and dtype, plus formats."""
    net = {k: v for k, v in cfg.to_dict().items() if k not in ("precision", "dtype")}
    blob = json.dumps({"net": net, "export": EXPORT_VERSION, "openvino": openvino_version()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def model_dir(cfg: ExtractCfg) -> Path:
    return models_dir() / f"{cfg.backbone}--{cfg.layer.replace(':', '_').replace('/', '_')}-{cfg.pool}--{model_key(cfg)}"


def cached_model(cfg: ExtractCfg) -> Path | None:
    """The IR of ``cfg``'s network if a finished conversion is cached (``export.json`` is written last)."""
    d = model_dir(cfg)
    xml = d / "model.xml"
    return xml if (d / "export.json").is_file() and xml.is_file() and (d / "model.bin").is_file() else None


class OpenVINOEmbedder(Embedder):
    """A converted network compiled for the CPU; ``map`` keeps several inference requests in flight."""

    runtime = "openvino"

    def __init__(self, xml: str | Path, *, precision: str = "fp32", streams: int | None = None,
                 threads: int | None = None):
        import openvino as ov

        if precision not in OV_PRECISIONS:
            raise OptionError(f"--precision {precision!r}: use fp32, bf16 or fp16")
        config = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": OV_PRECISIONS[precision],
                  "INFERENCE_NUM_THREADS": threads or usable_cpus()}
        if streams:
            config["NUM_STREAMS"] = streams
        core = ov.Core()
        try:
            model = core.read_model(str(xml))
        except Exception as exc:  # a truncated or foreign file
            raise ExportError(f"{xml}: cannot be read ({str(exc).splitlines()[0] if str(exc) else exc})") from None
        self.compiled = core.compile_model(model, "CPU", config)
        used = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if used != OV_PRECISIONS[precision]:
            raise OptionError(f"--precision {precision}: OpenVINO runs {used} on this CPU (no native {precision}); "
                              "use --precision fp32, or --runtime torch to emulate it")
        self.precision = precision
        self.n_requests = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.n_outputs = len(self.compiled.outputs)
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()

    def _outputs(self, request) -> tuple[np.ndarray, np.ndarray | None]:
        feats = request.get_output_tensor(0).data.copy()
        return feats, request.get_output_tensor(1).data.copy() if self.n_outputs > 1 else None

    def __call__(self, images) -> tuple[np.ndarray, np.ndarray | None]:
        with self._lock:
            self._request.infer({0: np.ascontiguousarray(images)})
            return self._outputs(self._request)

    def map(self, batches: Iterable[Batch]) -> Iterator[tuple[Batch, np.ndarray | None, np.ndarray | None]]:
        """Batches go to the requests in turn (asynchronously); results come back in input order."""
        free = [self.compiled.create_infer_request() for _ in range(self.n_requests)]
        pending: deque = deque()  # (batch, its request, or None for a batch without images), in input order
        for b in batches:
            while pending and (pending[0][1] is None or (b.images is not None and not free)):
                yield self._finish(*pending.popleft(), free)
            request = None
            if b.images is not None:
                request = free.pop()
                request.start_async({0: np.ascontiguousarray(b.images)})
            pending.append((b, request))
        while pending:
            yield self._finish(*pending.popleft(), free)

    def _finish(self, batch: Batch, request, free: list):
        if request is None:
            return batch, None, None
        request.wait()
        out = self._outputs(request)
        free.append(request)
        return (batch, *out)
