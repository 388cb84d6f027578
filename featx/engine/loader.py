"""Decoded batches without torch: threads decode and resize images to uint8 NHWC, failures pass through.

PIL releases the GIL while it decodes and resamples, so decoding threads run in parallel with
each other and with the model (which releases it too); there is no process start-up, no pickling
and no fork after a runtime has started its own threads. Shared by extraction, prediction and
``ImageEmbedder``.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..config import DataCfg
from ..data.images import ImageReadError, read_for_model
from .cpu import usable_cpus


@dataclass
class Batch:
    """Images ``indices`` (into the input sequence) decoded into ``images`` (uint8 NHWC, or None when
    none could be read), ``(index, reason)`` per image that failed, and the seconds spent decoding."""

    indices: list[int]
    images: Any  # np.ndarray, or what the loader's ``prepare`` made of it (a pinned tensor)
    failures: list[tuple[int, str]] = field(default_factory=list)
    decode_s: float = 0.0


def decode_batch(items: Sequence, start: int, cfg: DataCfg, prepare: Callable | None = None) -> Batch:
    """Read ``items`` (paths, PIL images or arrays) numbered from ``start`` into one :class:`Batch`."""
    t0 = time.perf_counter()
    ok, arrays, failed = [], [], []
    for k, item in enumerate(items, start):
        try:
            arrays.append(read_for_model(item, cfg))
            ok.append(k)
        except ImageReadError as exc:
            failed.append((k, str(exc)))
    images = np.stack(arrays) if arrays else None
    if images is not None and prepare is not None:
        images = prepare(images)
    return Batch(ok, images, failed, time.perf_counter() - t0)


def default_workers(gpu: bool = False) -> int:
    """Decoding threads. Beside a GPU all but one core (the GPU runs the model). On CPU the model shares the
    cores: decoding a 224 px painting costs about a quarter of a Lite0 bf16 forward, so a quarter of the
    cores, and at least 2 so one slow file does not stall the model. On 2 cores 1 and 2 threads measure
    alike and 4 is slower (``benchmarks/results``)."""
    cpus = usable_cpus()
    return min(32, max(1, cpus - 1)) if gpu else max(2, cpus // 4)


def iter_batches(items: Sequence, cfg: DataCfg, *, batch_size: int, workers: int | None = None,
                 prepare: Callable | None = None, gpu: bool = False) -> Iterator[Batch]:
    """Batches of ``items`` in order, decoded ``workers`` at a time (0: in this thread).

    ``prepare(images)`` runs in the decoding thread on each stacked batch (e.g. pinning it for a GPU).
    """
    workers = default_workers(gpu) if workers is None else workers
    starts = range(0, len(items), batch_size)
    if workers <= 0:
        for s in starts:
            yield decode_batch(items[s:s + batch_size], s, cfg, prepare)
        return
    ahead = 2 * workers + 2  # decoded batches kept ready: enough to ride out a slow file, little memory
    with ThreadPoolExecutor(workers, thread_name_prefix="featx-decode") as pool:
        pending: deque = deque()
        try:
            for s in starts:
                pending.append(pool.submit(decode_batch, items[s:s + batch_size], s, cfg, prepare))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()
