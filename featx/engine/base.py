"""The interface every runtime's embedder offers (:mod:`featx.engine.embed`, :mod:`featx.engine.openvino`)."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np

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
