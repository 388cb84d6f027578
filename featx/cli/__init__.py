"""The ``featx`` command line: a typer app assembled from one module per command.

Each command parses options, calls one library function and prints. Every error
ends as one ``error: ...`` line on stderr with a documented exit code
(:mod:`featx.cli._common`); set ``FEATX_DEBUG=1`` to see tracebacks. Heavy
libraries are imported inside commands.
"""

from __future__ import annotations

import typer

from ._common import OneLineErrors

app = typer.Typer(
    name="featx",
    cls=OneLineErrors,
    help="Frozen-backbone features of labelled images, classifiers and transferability on the cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"featx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print featx's version and exit.")) -> None:
    """Frozen-backbone features of labelled images, classifiers and transferability on the cache."""


# each module registers its command; the order is the order of `featx --help`
from . import analyze, extract, info, sample_data, fit, finetune, predict, backbones, cluster, run, env  # noqa: E402,F401,I001


def main() -> None:
    """Console entry point."""
    app()
