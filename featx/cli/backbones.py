"""`featx backbones` (the registered backbones) and `featx backbones nodes NAME` (tappable modules)."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import app
from ._common import handles_errors, out

backbones_app = typer.Typer(help="List the registered backbones, or the modules of one (`nodes NAME`).",
                            invoke_without_command=True, no_args_is_help=False)
app.add_typer(backbones_app, name="backbones")


@backbones_app.callback()
@handles_errors
def backbones(
    ctx: typer.Context,
    pattern: Annotated[str, typer.Option(help="fnmatch filter on names, e.g. 'resnet*'.")] = "*",
) -> None:
    """Table of backbones: source, default layer, feature dim, input size, weights offline."""
    if ctx.invoked_subcommand is not None:
        return
    from ..backbones.registry import get_cfg, list_backbones
    from ..backbones.weights import weights_offline

    rows = [("name", "source", "default layer", "dim", "input", "layers", "weights offline")]
    for name in list_backbones(pattern):
        c = get_cfg(name)
        layer = c.layer(None)
        rows.append((name, c.source, f"{layer.name} ({layer.pool})", str(layer.dim()),
                     f"{c.data.input_size}px", ",".join(c.layer_names), weights_offline(c)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    out("\nAlso: timm:<name> (any timm model), tv:<name> (any torchvision model); "
        "`featx backbones nodes NAME` lists tappable modules.")


@backbones_app.command("nodes")
@handles_errors
def nodes(name: Annotated[str, typer.Argument(help="Backbone name.")]) -> None:
    """List the module paths of a backbone usable as --layer module:<path> (builds it, random weights)."""
    from ..backbones.build import build_random
    from ..backbones.registry import get_cfg

    cfg = get_cfg(name)
    model = build_random(cfg.source, cfg.arch)
    for path, mod in model.named_modules():
        if path:
            out(f"{path}  {type(mod).__name__}")
