"""`featx sample-data`: write a small real image folder (scikit-learn's handwritten digits)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app
from ._common import handles_errors, out


@app.command("sample-data")
@handles_errors
def sample_data(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (class-per-folder PNGs).")] = Path("examples/digits"),
    per_class: Annotated[int, typer.Option(help="Images per digit class (max 180).")] = 100,
) -> None:
    """Write scikit-learn's bundled handwritten digits as a small real image folder."""
    from ..data.samples import export_digits

    export_digits(out_dir, per_class)
    out(f"wrote {sum(1 for _ in out_dir.rglob('*.png'))} digit images in 10 class folders under {out_dir}")
