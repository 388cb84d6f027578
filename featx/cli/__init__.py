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

from . import extract as _extract  # noqa: E402,F401  (registers commands)

for _optional in ("fit", "analyze", "finetune", "scale"):
    try:
        __import__(f"{__name__}.{_optional}")
    except ModuleNotFoundError as _exc:  # command group not written yet
        if _exc.name != f"{__name__}.{_optional}":
            raise


def main() -> None:
    """Console entry point."""
    app()
