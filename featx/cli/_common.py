"""Shared CLI plumbing: error handling and output helpers."""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable

import typer

from ..errors import FeatxError


def handles_errors(fn: Callable) -> Callable:
    """Turn a FeatxError into ``error: <message>`` on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FeatxError as exc:
            if os.environ.get("FEATX_DEBUG"):
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted; re-run the same command to resume", err=True)
            raise typer.Exit(130) from None

    return wrapper


def out(msg: str = "") -> None:
    """Print a result line to stdout."""
    typer.echo(msg)


def warn(msg: str) -> None:
    """Print a warning line to stderr."""
    print(f"warning: {msg}", file=sys.stderr)
