"""Choices of the options with fixed values (typer enums, so ``--help`` lists them) and options
shared by several commands. Values come from the library's own constants."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..config import DTYPES, POOLS, PRECISIONS, RUNTIMES, TTAS, device_problem
from ..data import splits
from ..errors import DataError
from ..store.sync import MISSING_POLICIES


def _choices(name: str, values) -> type[Enum]:
    return Enum(name, {v: v for v in values}, type=str)


Pool = _choices("Pool", POOLS)
Tta = _choices("Tta", TTAS)
Dtype = _choices("Dtype", DTYPES)
Precision = _choices("Precision", PRECISIONS)
Runtime = _choices("Runtime", RUNTIMES)
ClassWeight = _choices("ClassWeight", ("none", "balanced"))
Split = _choices("Split", ("all", *splits.SPLITS))
Missing = _choices("Missing", MISSING_POLICIES)


def check_device(value: str) -> str:
    """``--device``: the library's one check (:func:`featx.config.device_problem`) as a typer callback."""
    problem = device_problem(value)
    if problem:
        raise typer.BadParameter(problem)
    return value


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``--split-ratios``: the library's parser (:func:`featx.data.splits.parse_ratios`), its error a usage error."""
    try:
        return splits.parse_ratios(text)
    except DataError as exc:
        raise typer.BadParameter(str(exc)) from None


def value(choice: Enum | None) -> str | None:
    """The plain string of a choice (None stays None)."""
    return None if choice is None else choice.value


RunsDirOpt = Annotated[Path, typer.Option(help="Folder of run folders: `fit` writes runs there, `analyze` reads "
                                          "fit results from it (Kendall's tau) and writes there too.")]
OverwriteRunOpt = Annotated[bool, typer.Option("--overwrite", help="Write into an existing run folder instead "
                                               "of a new one with a -2, -3, ... suffix.")]
