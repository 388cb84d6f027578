"""`featx extract`, `featx info` and `featx backbones`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app
from ._common import handles_errors, out

backbones_app = typer.Typer(help="List the registered backbones, or the modules of one (`nodes NAME`).",
                            invoke_without_command=True, no_args_is_help=False)
app.add_typer(backbones_app, name="backbones")

EXTRACT_EXAMPLES = """
Examples:

  featx extract --backbone efficientnet_lite0 --data ../shared/data/monet-sisley

  featx extract -b vgg16 --weights none --layer fc2 --data DIR --out cache/x.h5

  featx extract -b resnet50 --layer layer4 --pool spp --with-logits --tta hflip --data DIR
"""


@app.command(epilog=EXTRACT_EXAMPLES)
@handles_errors
def extract(
    backbone: Annotated[str, typer.Option("--backbone", "-b", help="Backbone name (`featx backbones`), "
                                          "or timm:<name> / tv:<name>.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Image folder (class-per-folder, optionally under "
                                       "train/val/test) or a CSV manifest path,label[,split].")],
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Store path (default: cache/<dataset>--"
                                                     "<backbone>--<layer>-<pool>--<hash>.h5).")] = None,
    weights: Annotated[str, typer.Option(help="imagenet (library weights), none (random init), or PATH of a "
                                         "state dict / checkpoint.")] = "imagenet",
    layer: Annotated[Optional[str], typer.Option(help="Tap point (see `featx backbones`); module:<path> for any "
                                                 "module.")] = None,
    pool: Annotated[Optional[str], typer.Option(help="avg | max | gem | flatten | spp | none (default: the "
                                                "layer's).")] = None,
    with_logits: Annotated[bool, typer.Option("--with-logits", help="Also store the source model's ImageNet "
                                              "logits (for LEEP / NCE).")] = False,
    tta: Annotated[str, typer.Option(help="none | hflip (mean of the image's and its mirror's features).")] = "none",
    dtype: Annotated[str, typer.Option(help="Stored feature dtype: float32 | float16.")] = "float32",
    image_size: Annotated[Optional[int], typer.Option(help="Override the input size (crop ratio kept).")] = None,
    label_from_name: Annotated[Optional[str], typer.Option(help="Regex whose group 1 in the file name is the "
                                                           "label, e.g. '^(.+?)_'.")] = None,
    split_seed: Annotated[int, typer.Option(help="Seed of the stratified 80/10/10 split used when the data has "
                                            "none.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    batch_size: Annotated[Optional[int], typer.Option(help="Images per batch (default 10 on CPU, 64 on "
                                                      "CUDA).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="DataLoader worker processes (default: CPUs - 1).")] = None,
    streams: Annotated[Optional[int], typer.Option(help="Batches run in parallel, one intra-op thread each "
                                                   "(default: one per core up to 4 on CPU, 1 on CUDA).")] = None,
    precision: Annotated[str, typer.Option(help="auto (bf16/fp16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | "
                                           "fp16.")] = "auto",
    channels_last: Annotated[bool, typer.Option("--channels-last/--no-channels-last",
                                                help="channels_last memory layout (faster for convnets).")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start the store afresh.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Embed every image under --data with a frozen backbone into an HDF5 store.

    Re-running the same command is a cache hit (the model is not loaded); new
    images are appended; an interrupted run resumes where it stopped.
    """
    from ..extract import extract as run

    res = run(backbone, data, out=out_path, weights=weights, layer=layer, pool=pool, tta=tta, dtype=dtype,
              with_logits=with_logits, image_size=image_size, label_from_name=label_from_name,
              split_seed=split_seed, device=device, batch_size=batch_size, workers=workers, streams=streams,
              precision=precision,
              channels_last=channels_last, overwrite=overwrite, progress=not quiet)
    if res.cache_hit:
        out(f"cache hit: {res.path} already holds all {res.n_rows} rows; nothing to do")
        return
    out(f"wrote {res.n_new} new rows to {res.path} ({res.n_rows} rows in all) in {res.seconds:.1f} s, "
        f"{res.images_per_s:.1f} img/s; {len(res.failures)} unreadable")
    for image_id, reason in res.failures[:10]:
        out(f"  failed: {image_id}: {reason}")
    if len(res.failures) > 10:
        out(f"  ... and {len(res.failures) - 10} more (see `featx info {res.path}`)")


@app.command()
@handles_errors
def info(
    store: Annotated[Path, typer.Argument(help="A featx HDF5 store.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Summarise a store: rows, dim, dtype, classes, splits, failures, fingerprint."""
    from ..store import load_features

    fs = load_features(store, require_complete=False, with_features=False)
    a = fs.attrs
    dim, dtype = a["dim"], a["dtype"]
    classes = {c: int((fs.labels == k).sum()) for k, c in enumerate(fs.classes)}
    splits = {s: int((fs.split == s).sum()) for s in ("train", "val", "test")}
    summary = {"path": str(store), "rows": len(fs), "dim": dim, "dtype": dtype, "complete": fs.complete,
               "classes": classes, "splits": splits, "split_source": a.get("split_source"),
               "failed": len(fs.failed), "logits": fs.logits is not None, "data_root": str(fs.data_root),
               "fingerprint": fs.fingerprint, "versions": a.get("versions"), "created": a.get("created")}
    if as_json:
        out(json.dumps(summary, indent=1))
        return
    fp = fs.fingerprint
    out(f"{store}  ({'complete' if fs.complete else 'INCOMPLETE: re-run the extract command to finish'})")
    out(f"  rows {len(fs)}, dim {dim}, dtype {dtype}, logits {'yes' if fs.logits is not None else 'no'}")
    out(f"  backbone {fp.get('backbone')} weights {fp.get('weights')} layer {fp.get('layer')} pool {fp.get('pool')} "
        f"tta {fp.get('tta')} input {fp.get('data', {}).get('input_size')}")
    out(f"  classes ({len(classes)}): " + ", ".join(f"{c} {n}" for c, n in classes.items()))
    out("  splits: " + ", ".join(f"{s} {n}" for s, n in splits.items()) + f"  [{a.get('split_source')}]")
    out(f"  failed {len(fs.failed)}" + "".join(f"\n    {i}: {r}" for i, r in fs.failed[:10]))
    out(f"  data root {fs.data_root}")
    out(f"  fingerprint {json.dumps(fp, sort_keys=True)}")


@app.command("sample-data")
@handles_errors
def sample_data(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (class-per-folder PNGs).")] = Path("examples/digits"),
    per_class: Annotated[int, typer.Option(help="Images per digit class (max 180).")] = 100,
) -> None:
    """Write scikit-learn's bundled handwritten digits as a small real image folder."""
    from ..data import export_digits

    export_digits(out_dir, per_class)
    out(f"wrote {sum(1 for _ in out_dir.rglob('*.png'))} digit images in 10 class folders under {out_dir}")


@backbones_app.callback()
@handles_errors
def backbones(
    ctx: typer.Context,
    pattern: Annotated[str, typer.Option(help="fnmatch filter on names, e.g. 'resnet*'.")] = "*",
) -> None:
    """Table of backbones: source, default layer, feature dim, input size, weights offline."""
    if ctx.invoked_subcommand is not None:
        return
    from ..registry import get_cfg, list_backbones, weights_offline

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
    from ..backbones import build_random
    from ..registry import get_cfg

    cfg = get_cfg(name)
    model = build_random(cfg.source, cfg.arch)
    for path, mod in model.named_modules():
        if path:
            out(f"{path}  {type(mod).__name__}")
