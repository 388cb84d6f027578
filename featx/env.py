"""Every environment variable featx reads: one record per name (default, meaning), read only here.

``featx env`` lists them with their values on this machine; ``docs/environment.md`` says the same.
A module that needs one imports its record (``env.CACHE.get()``), never ``os.environ`` directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Var:
    """One environment variable: its name, what unset means, what it does, who sets it."""

    name: str
    default: str
    help: str
    group: str = "featx"  # featx (set by users), scheduler (set by SLURM / torchrun), library, tests

    def get(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The value, or None when unset (``environ``: another mapping than this process's)."""
        return (os.environ if environ is None else environ).get(self.name)

    def path(self) -> Path:
        """A folder variable's value, or its default, with ``~`` expanded (empty counts as unset)."""
        return Path(self.get() or self.default).expanduser()


VARS: dict[str, Var] = {}


def _var(name: str, default: str, help: str, group: str = "featx") -> Var:
    VARS[name] = var = Var(name, default, help, group)
    return var


CACHE = _var("FEATX_CACHE", "./cache", "Home of stores, converted models and the default output paths.")
MODELS = _var("FEATX_MODELS", "$FEATX_CACHE/models", "Home of the networks converted to OpenVINO (shared by "
              "every store; safe to point at a shared folder on a cluster).")
DEBUG = _var("FEATX_DEBUG", "unset", "Set (to anything): an error raises with its Python traceback instead of "
             "ending as one `error:` line.")
MAX_PIXELS = _var("FEATX_MAX_PIXELS", "900000000", "Decoded images above this many pixels are refused and "
                  "recorded as failed (a decompression-bomb guard).")
CPU_BF16 = _var("FEATX_CPU_BF16", "probe /proc/cpuinfo", "1 or 0: the CPU has native bf16 (AVX-512 BF16 / AMX) or "
                "not, overriding the probe; decides what --precision auto picks.")
FAULT = _var("FEATX_FAULT", "unset", "Test hook: <point>[:n] SIGKILLs the process the n-th time it reaches a "
             "point; <point>[:n]:enospc|edquot|eio raises that disk error there.", "tests")
DELAY = _var("FEATX_DELAY", "unset", "Test hook: <point>:<seconds> sleeps at that point each time (a long job "
             "for signal and requeue tests).", "tests")
SHARED_DATA = _var("FEATX_SHARED_DATA", "../shared/data", "Tests: where the shared WikiArt paintings are; tests "
                   "that need them skip where they are absent.", "tests")
SLURM_ARRAY_JOB_ID = _var("SLURM_ARRAY_JOB_ID", "unset", "SLURM array job: with the task id, the task "
                          "requeued on SIGUSR1.", "scheduler")
SLURM_ARRAY_TASK_ID = _var("SLURM_ARRAY_TASK_ID", "unset", "SLURM array task: --shard auto takes this "
                           "task's block of the images.", "scheduler")
SLURM_ARRAY_TASK_MIN = _var("SLURM_ARRAY_TASK_MIN", "unset", "First task id of the array.", "scheduler")
SLURM_ARRAY_TASK_MAX = _var("SLURM_ARRAY_TASK_MAX", "unset", "Last task id of the array.", "scheduler")
SLURM_ARRAY_TASK_COUNT = _var("SLURM_ARRAY_TASK_COUNT", "unset", "Tasks in the array (the shard count).",
                              "scheduler")
SLURM_JOB_ID = _var("SLURM_JOB_ID", "unset", "SLURM job: requeued on SIGUSR1.", "scheduler")
RANK = _var("RANK", "unset", "torchrun rank: --shard auto takes this rank's block.", "scheduler")
WORLD_SIZE = _var("WORLD_SIZE", "unset", "torchrun world size (the shard count).", "scheduler")
LOCAL_RANK = _var("LOCAL_RANK", "unset", "torchrun rank on this node: the GPU it uses.", "scheduler")
TORCH_HOME = _var("TORCH_HOME", "~/.cache/torch", "torchvision's weight cache (`featx backbones` says "
                  "whether the weights are there).", "library")
HF_HUB_CACHE = _var("HF_HUB_CACHE", "~/.cache/huggingface/hub", "timm's weight cache (Hugging Face Hub).",
                    "library")
CUDA_VISIBLE_DEVICES = _var("CUDA_VISIBLE_DEVICES", "all", "Empty or -1: no GPU is used (--device auto "
                            "stays on the CPU).", "library")
HDF5_USE_FILE_LOCKING = _var("HDF5_USE_FILE_LOCKING", "unset", "Leave unset or FALSE: featx guards writers "
                             "with its own lock; TRUE makes HDF5 refuse readers during appends.", "library")


def flag(var: Var, environ: Mapping[str, str] | None = None) -> bool | None:
    """A yes/no variable: None unset, False for empty, 0, false or no, True otherwise."""
    value = var.get(environ)
    return None if value is None else value.strip().lower() not in ("", "0", "false", "no")


def table() -> list[dict[str, str | None]]:
    """Each variable with its value here, None where unset (``featx env``)."""
    return [{"name": v.name, "value": v.get(), "default": v.default, "group": v.group, "help": v.help}
            for v in VARS.values()]
