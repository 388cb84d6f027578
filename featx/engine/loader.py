"""A DataLoader of decoded images: workers decode and resize (uint8 HWC), failures pass through.

Shared by extraction, prediction and (later) fine-tuning.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ..config import DataCfg
from ..data.images import ImageReadError, read_for_model


class ImageFiles(torch.utils.data.Dataset):
    """``(index, uint8 HWC array or None, failure reason or None)`` per path."""

    def __init__(self, paths: Sequence[Path], cfg: DataCfg):
        self.paths = list(paths)
        self.cfg = cfg

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return i, read_for_model(self.paths[i], self.cfg), None
        except ImageReadError as exc:
            return i, None, str(exc)


def collate(items):
    """Stack the readable images; pass failures through as (index, reason)."""
    ok = [(i, a) for i, a, _ in items if a is not None]
    failed = [(i, r) for i, a, r in items if a is None]
    x = torch.from_numpy(np.stack([a for _, a in ok])) if ok else None
    return [i for i, _ in ok], x, failed


def _worker_init(_):
    torch.set_num_threads(1)


def usable_cpus() -> int:
    """CPUs this process may run on (respects affinity masks and SLURM/cgroup pinning)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers() -> int:
    cpus = usable_cpus()
    return min(8, max(1, cpus - 1)) if cpus > 1 else 0


def iter_batches(paths: Sequence[Path], cfg: DataCfg, *, batch_size: int, workers: int | None,
                 pin_memory: bool) -> Iterator[tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]]:
    """Batches of (indices into ``paths``, uint8 NHWC tensor, failures), in order."""
    workers = default_workers() if workers is None else workers
    loader = torch.utils.data.DataLoader(
        ImageFiles(paths, cfg), batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=collate, pin_memory=pin_memory, worker_init_fn=_worker_init if workers else None,
        persistent_workers=False, prefetch_factor=4 if workers else None)
    yield from loader
