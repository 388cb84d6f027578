"""``best.pt`` / ``last.pt``: plain dicts of tensors, numbers and strings (``torch.load(weights_only=True)``).

Both hold the model's state dict (the backbone with the new head at ``head["path"]``), the registry
entry of the backbone, the classes, the head's shape and the training config; ``last.pt`` also holds
the optimiser, schedule, early-stopping state and history that ``--resume`` continues from.
``featx extract --weights best.pt`` and ``featx predict best.pt`` read them
(:mod:`featx.backbones.weights`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ... import __version__
from ...backbones.weights import (
    FINETUNE_FORMAT,
    is_finetune_checkpoint,
    read_checkpoint,
)
from ...errors import OptionError
from ...files import atomic_path

VERSION = 1


def save(path: Path, payload: dict) -> Path:
    """Write ``payload`` with the format marker, atomically (a killed run or a full disk never leaves half a
    file, nor replaces the previous one: :func:`featx.files.atomic_path`)."""
    with atomic_path(path) as tmp:
        torch.save({"format": FINETUNE_FORMAT, "version": VERSION, "featx_version": __version__,
                    "torch_version": str(torch.__version__), **payload}, tmp)
    return path


def load(path: Path) -> dict:
    """A fine-tuning checkpoint, or an :class:`OptionError` naming the file."""
    if not path.is_file():
        raise OptionError(f"--resume: {path} does not exist; nothing to resume (run without --resume)")
    obj = read_checkpoint(path)
    if not is_finetune_checkpoint(obj):
        raise OptionError(f"--resume: {path} is not a checkpoint written by `featx finetune`")
    return obj
