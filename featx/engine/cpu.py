"""What this machine offers for inference, read without torch: usable cores, native bf16, a visible GPU."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from .. import env

BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""x86 CPU flags that mean native bfloat16 arithmetic (AVX-512 BF16 on Cooper Lake / Zen 4+, AMX on Sapphire Rapids+)."""


def usable_cpus() -> int:
    """CPUs this process may run on (respects affinity masks and SLURM/cgroup pinning)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The ``flags`` of ``/proc/cpuinfo`` (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16() -> str | None:
    """The flag that gives this CPU native bf16 (``amx_bf16`` or ``avx512_bf16``), or None.

    ``FEATX_CPU_BF16=0|1`` overrides the probe (for machines whose /proc/cpuinfo hides flags).
    """
    forced = env.flag(env.CPU_BF16)
    if forced is not None:
        return "FEATX_CPU_BF16=1" if forced else None
    flags = cpu_flags()
    return next((f for f in reversed(BF16_FLAGS) if f in flags), None)


def gpu_visible() -> bool:
    """An NVIDIA GPU is visible to this process (driver present, not hidden by CUDA_VISIBLE_DEVICES).

    A cheap guess made without importing torch; ``--device auto`` uses it to choose the runtime,
    and torch has the last word once it is imported.
    """
    visible = env.CUDA_VISIBLE_DEVICES.get()
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidia0").exists()
