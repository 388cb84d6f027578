"""Shards: one of ``n`` deterministic, balanced slices of a dataset, each extracted into its own store.

Shard ``i`` of ``n`` takes the ``i``-th contiguous block of the sorted ids (block sizes differ by at
most one), so shards concatenated in order are the dataset in order. The shard comes from
``--shard i/n``, else from a SLURM array task (``SLURM_ARRAY_TASK_ID`` / ``SLURM_ARRAY_TASK_COUNT``)
or a torchrun rank (``RANK`` / ``WORLD_SIZE``; ``LOCAL_RANK`` picks the GPU). Each shard's store is
``<store>.shard-<i>-of-<n>.h5`` beside the store the single run would write, with the same fingerprint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from .. import env
from ..errors import OptionError
from ..store.merge import shard_path


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``; ``origin`` says where it came from (shown to the user)."""

    index: int
    count: int
    origin: str = "--shard"
    local_rank: int | None = None

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise OptionError(f"--shard {self.index}/{self.count}: need 0 <= i < n (e.g. --shard 0/4)")

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def block(self, n_items: int) -> np.ndarray:
        """Boolean mask of this shard's items among ``n_items`` (in dataset order)."""
        lo, hi = self.index * n_items // self.count, (self.index + 1) * n_items // self.count
        mask = np.zeros(n_items, bool)
        mask[lo:hi] = True
        return mask

    def path(self, store: Path) -> Path:
        """This shard's store beside ``store``."""
        return shard_path(store, self.index, self.count)

    def device(self, device: str) -> str:
        """``auto`` becomes ``cuda:<LOCAL_RANK>`` under torchrun (the engine falls back to CPU without CUDA)."""
        if device == "auto" and self.local_rank is not None:
            return f"auto:{self.local_rank}"
        return device


def parse_shard(text: str) -> Shard:
    """``"i/n"`` as a :class:`Shard`, or a one-line :class:`OptionError`."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise OptionError(f"--shard {text!r}: use i/n with 0 <= i < n, e.g. --shard 0/4 "
                          "(or ${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT})")
    return Shard(int(m.group(1)), int(m.group(2)))


def _int(environ: Mapping[str, str] | None, var: env.Var) -> int | None:
    value = (var.get(environ) or "").strip()
    return int(value) if value.lstrip("-").isdigit() else None


def detect_shard(environ: Mapping[str, str] | None = None) -> Shard | None:
    """The shard a SLURM array task or a torchrun rank should take, or None outside them."""
    task = _int(environ, env.SLURM_ARRAY_TASK_ID)
    if task is not None:
        lo, hi = _int(environ, env.SLURM_ARRAY_TASK_MIN) or 0, _int(environ, env.SLURM_ARRAY_TASK_MAX)
        count = _int(environ, env.SLURM_ARRAY_TASK_COUNT) or (hi - lo + 1 if hi is not None else None)
        if count and count > 1:
            if hi is not None and hi - lo + 1 != count:
                raise OptionError(f"SLURM array {lo}-{hi} has {count} tasks with gaps or a step; featx shards need "
                                  "a contiguous array (--array=0-N) or an explicit --shard i/n")
            return Shard(task - lo, count, "SLURM_ARRAY_TASK_ID")
    rank, world = _int(environ, env.RANK), _int(environ, env.WORLD_SIZE)
    if rank is not None and world and world > 1:
        return Shard(rank, world, "torchrun RANK", _int(environ, env.LOCAL_RANK))
    return None


def resolve_shard(shard: str | Shard | None) -> Shard | None:
    """``"auto"``: from the environment; ``"none"``/None: no sharding; ``"i/n"``: that shard."""
    if isinstance(shard, Shard) or shard is None:
        return shard
    if shard == "auto":
        return detect_shard()
    if shard == "none":
        return None
    return parse_shard(shard)
