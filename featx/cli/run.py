"""`featx run`: a study pipeline (pipelines/*.toml) end to end, skipping finished steps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app
from ._common import handles_errors, out


@app.command("run")
@handles_errors
def run_pipeline(
    pipeline: Annotated[Path, typer.Argument(help="A pipeline file, e.g. pipelines/monet_sisley.toml.")],
    slurm: Annotated[bool, typer.Option("--slurm", help="Run each extraction as a SLURM array job (the \\[slurm] table: "
                                        "shards, partition, time, ...) and wait for it.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Run every step even if its outputs are complete.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run a study: extract each backbone, fit the classifiers, analyze; finished steps are skipped.

    A step is finished when its outputs are complete for its current inputs (a store that is a
    cache hit; a fit or analysis folder made from the same stores with the same settings), so
    re-submitting an interrupted job does only what is left.
    """
    from ..jobs.pipeline import run_study

    steps = run_study(pipeline, slurm=slurm, force=force, progress=not quiet, echo=out)
    ran = [s.name for s in steps if not s.skipped]
    out(f"{len(steps)} steps: {len(ran)} run, {len(steps) - len(ran)} already done")
