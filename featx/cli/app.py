"""The typer app every command module registers on, and ``featx --version``."""

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
