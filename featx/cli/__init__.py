"""The ``featx`` command line: a typer app assembled from one module per command.

Each command parses options, calls one library function and prints. Every error
ends as one ``error: ...`` line on stderr with a documented exit code
(:mod:`featx.cli._common`); set ``FEATX_DEBUG=1`` to see tracebacks. Heavy
libraries are imported inside commands.
"""

from __future__ import annotations

from .app import app

# each module registers its command; the order is the order of `featx --help`
from . import analyze, extract, info, sample_data, fit, finetune, predict, explain, neighbors, audit, explore, backbones, cluster, run, env  # noqa: F401,I001


def main() -> None:
    """Console entry point."""
    app()
