"""`featx explain`: where the network looked (Grad-CAM, Grad-CAM++, Score-CAM) for a fit run or a fine-tuned network."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from ._common import handles_errors, out, warn
from .options import check_device, value
from ..look.explain import METHODS

Method = Enum("Method", {m: m for m in METHODS}, type=str)

EXPLAIN_EXAMPLES = """
Examples:

  featx explain runs/monet/*--softmax PAINTING.jpg --out explain/

  featx explain runs/ft/best.pt a.jpg b.jpg --method scorecam --class claude-monet --sheet maps.png
"""


@app.command(epilog=EXPLAIN_EXAMPLES)
@handles_errors
def explain(
    model: Annotated[Path, typer.Argument(help="A `featx fit` run folder or its model.skops (softmax, linearsvc "
                                          "or mlp), or a best.pt written by `featx finetune`.", show_default=False)],
    images: Annotated[list[Path], typer.Argument(help="Image files to explain.", show_default=False)],
    method: Annotated[Method, typer.Option(help="gradcam (gradients, one pass), gradcam++ (gradients, finer for "
                                           "several objects) or scorecam (no gradients; one forward pass per "
                                           "channel, slow).")] = Method.gradcam,
    target: Annotated[Optional[str], typer.Option("--class", help="Class whose evidence the maps show (default: "
                                                  "each image's top class).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for one PNG per image: the painting, "
                                                    "its map and the top classes (default: explain/ unless "
                                                    "--sheet is given).")] = None,
    sheet: Annotated[Optional[Path], typer.Option(help="One PNG with every image and its map.")] = None,
    top_k: Annotated[int, typer.Option(help="Classes shown per image.")] = 3,
    weights: Annotated[Optional[Path], typer.Option(help="Checkpoint file, for models fit on features of a "
                                                         "local checkpoint (file:<sha256> weights).")] = None,
    trust: Annotated[bool, typer.Option("--trust", help="Also load a pickle model (model.joblib of older featx), "
                                                        "which can run code as it loads.")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N | mps.", callback=check_device)] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per forward/backward pass.")] = 8,
) -> None:
    """Draw class activation maps: what in each painting made the model decide."""
    from ..api.explain import explain_with_options
    from ..look.explain import ExplainOptions

    if out_dir is None and sheet is None:
        out_dir = Path("explain")
    options = ExplainOptions(method=value(method), target=target, top_k=top_k, out=out_dir, sheet=sheet,
                             weights=weights, trust=trust, device=device, batch_size=batch_size)
    result = explain_with_options(model, images, options, echo=out)
    for path, reason in result.failures:
        warn(f"{path}: skipped ({reason})")
