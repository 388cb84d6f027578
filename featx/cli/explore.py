"""`featx explore`: a local web app over stores and runs (the explore extra: starlette, uvicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import handles_errors, out
from .app import app

EXPLORE_EXAMPLES = """
Examples:

  featx explore cache/monet-sisley--efficientnet_lite0--1a2b3c4d5e.h5

  featx explore cache/A.h5 cache/B.h5 --runs runs      (two stores side by side, with the fit runs)

  featx explore STORE.h5 --host 0.0.0.0 --no-browser   (other machines: the printed URL carries a token)
"""


@app.command(epilog=EXPLORE_EXAMPLES)
@handles_errors
def explore(
    stores: Annotated[list[Path], typer.Argument(help="Feature stores (.h5) written by `featx extract`.",
                                                 show_default=False)],
    runs: Annotated[Optional[Path], typer.Option(help="Folder of `featx fit`, `featx analyze` and `featx audit` "
                                                 "runs (default: runs/ when it exists).", show_default=False)] = None,
    port: Annotated[int, typer.Option(help="Port to listen on; the next free one when it is taken (0: any).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to listen on. Anything but loopback puts a random token in the "
                                      "printed URL, and no request is answered without it.")] = "127.0.0.1",
    token: Annotated[Optional[str], typer.Option(help="Use this token instead of a random one (also on "
                                                 "loopback).", show_default=False)] = None,
    browser: Annotated[bool, typer.Option("--browser/--no-browser", help="Open the page in the default "
                                          "browser.")] = True,
) -> None:
    """Browse STORES in a local web app: maps of the paintings, neighbours, fit runs and confusion matrices,
    audit flags, class activation maps, stores side by side, and images dropped on the page classified."""
    from ..explore.launch import ExploreOptions, serve

    options = ExploreOptions(host=host, port=port, token=token, open_browser=browser)
    runs_dir = runs if runs is not None else (Path("runs") if Path("runs").is_dir() else None)
    serve(stores, runs_dir, options, echo=out)
