"""The ``featx`` command line: a typer app assembled from one module per command group.

Each command parses options, calls one library function and prints. Known errors
(:class:`featx.errors.FeatxError`) print as one line with a non-zero exit
(``_common.handles_errors``); set ``FEATX_DEBUG=1`` to see tracebacks. Heavy libraries are imported inside commands.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="featx",
    help="Frozen-backbone features of labelled images, classifiers and transferability on the cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from . import analyze, extract, fit  # noqa: E402,F401  (each module registers its commands)


def main() -> None:
    """Console entry point."""
    app()
