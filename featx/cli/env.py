"""`featx env`: the environment variables featx reads, their values here and what they do."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .. import env
from .app import app
from ._common import handles_errors, out


@app.command("env")
@handles_errors
def env_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """List the environment variables featx reads: value here (or unset), default, meaning."""
    rows = env.table()
    if as_json:
        out(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    for group in dict.fromkeys(r["group"] for r in rows):
        out(f"{group}:")
        for r in (r for r in rows if r["group"] == group):
            value = "unset" if r["value"] is None else repr(r["value"])
            out(f"  {r['name'].ljust(width)}  {value}  (default: {r['default']})")
            out(f"  {''.ljust(width)}  {r['help']}")
