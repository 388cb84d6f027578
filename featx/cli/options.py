"""Choices of the options with fixed values (typer enums, so ``--help`` lists them) and options
shared by several commands. Values come from the library's own constants."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..config import DTYPES, POOLS, PRECISIONS, RUNTIMES, TTAS
from ..data.splits import SPLITS
from ..store.sync import MISSING_POLICIES


def _choices(name: str, values) -> type[Enum]:
    return Enum(name, {v: v for v in values}, type=str)


Pool = _choices("Pool", POOLS)
Tta = _choices("Tta", TTAS)
Dtype = _choices("Dtype", DTYPES)
Precision = _choices("Precision", PRECISIONS)
Runtime = _choices("Runtime", RUNTIMES)
ClassWeight = _choices("ClassWeight", ("none", "balanced"))
Split = _choices("Split", ("all", *SPLITS))
Missing = _choices("Missing", MISSING_POLICIES)

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device(value: str) -> str:
    """``--device`` is auto, cpu, mps, cuda or cuda:N."""
    if not _DEVICE.match(value):
        raise typer.BadParameter(f"{value!r} is not one of auto, cpu, cuda, cuda:N, mps")
    return value


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``--split-ratios 0.8,0.1,0.1``."""
    try:
        ratios = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give three numbers train,val,test, e.g. 0.8,0.1,0.1") from None
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-6 or ratios[0] <= 0:
        raise typer.BadParameter(f"{text!r}: need three non-negative numbers that sum to 1 with train > 0")
    return ratios  # type: ignore[return-value]


def value(choice: Enum | None) -> str | None:
    """The plain string of a choice (None stays None)."""
    return None if choice is None else choice.value


RunsDirOpt = Annotated[Path, typer.Option(help="Folder of run folders: `fit` writes runs there, `analyze` reads "
                                          "fit results from it (Kendall's tau) and writes there too.")]
OverwriteRunOpt = Annotated[bool, typer.Option("--overwrite", help="Write into an existing run folder instead "
                                               "of a new one with a -2, -3, ... suffix.")]
