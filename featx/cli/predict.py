"""`featx predict`: classify new images with a model written by `featx fit` or `featx finetune` (one network
or an ensemble)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from ._common import handles_errors, out, warn


@app.command()
@handles_errors
def predict(
    model: Annotated[Path, typer.Argument(help="model.skops written by `featx fit`, best.pt written by "
                                          "`featx finetune`, or their run folder; or the run folder (or "
                                          "ensemble.json) of `featx finetune --seeds K`, whose members' "
                                          "probabilities are averaged.", show_default=False)],
    images: Annotated[list[Path], typer.Argument(help="Image files to classify.", show_default=False)],
    top_k: Annotated[int, typer.Option(help="Classes shown per image.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image: "
                                                         '{"path": ..., "top": [[class, probability], ...]}.')]
    = False,
    weights: Annotated[Optional[Path], typer.Option(help="Checkpoint file, for models fit on features of a "
                                                         "local checkpoint (file:<sha256> weights).")] = None,
    trust: Annotated[bool, typer.Option("--trust", help="Also load a pickle model (model.joblib of older featx), "
                                                        "which can run code as it loads: only for a file you made "
                                                        "yourself. model.skops and best.pt never run code.")]
    = False,
) -> None:
    """Embed IMAGES with the model's backbone and print the top-k classes with probabilities."""
    from ..api import predict as run
    from ..learn.predict import format_prediction

    results = run(model, images, top_k=top_k, weights=weights, errors="ignore", trust=trust)
    for r in results:
        out(json.dumps(r) if as_json else format_prediction(r))
    for path, reason in results.failures:
        warn(f"{path}: skipped ({reason})")
    if not results:
        raise typer.Exit(1)
