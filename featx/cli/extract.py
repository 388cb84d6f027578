"""`featx extract`: embed an image folder with a frozen backbone into an HDF5 store."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..errors import OptionError, Stopped
from ..extraction.options import ExtractOptions
from .app import app
from ._common import command_args, handles_errors, out, progress
from .options import (
    Dtype,
    Missing,
    Pool,
    Precision,
    Runtime,
    Tta,
    check_device,
    parse_ratios,
    value,
)

EXTRACT_EXAMPLES = """
Examples:

  featx extract --backbone efficientnet_lite0 --data ../shared/data/monet-sisley

  featx extract -b vgg16 --weights none --layer fc2 --data DIR --out cache/x.h5

  featx extract -b resnet50 --layer layer4 --pool spp --with-logits --tta hflip --data DIR
"""


if TYPE_CHECKING:
    from ..jobs.slurm import SlurmOptions

CLUSTER = "Cluster"
SUBMISSION = frozenset({"slurm", "shards", "partition", "time_limit", "gpus_per_task", "cpus_per_task", "mem",
                        "account", "max_running", "wait", "dry_run"})
"""The parameters that submit an array job (:class:`~featx.jobs.slurm.SlurmOptions`); the rest build the
:class:`~featx.extraction.options.ExtractOptions` each task runs."""

SYNC_WORDS = {"new": "{} new", "changed": "{} changed", "retried": "{} failed retried",
              "missing": "{} rows dropped (file gone)", "kept_missing": "{} rows kept whose file is gone "
              "(--missing drop removes them)", "forgotten_failures": "{} failures forgotten (file gone)",
              "relabelled": "{} relabelled", "resplit": "{} moved to another split",
              "restat": "{} touched but identical (stats updated)", "hashed": "{} hashed"}


def sync_line(summary: dict[str, int]) -> str:
    """``featx extract``'s account of what changed against the store, e.g. "2 new, 1 relabelled"."""
    return ", ".join(SYNC_WORDS[k].format(v) for k, v in summary.items() if v and k in SYNC_WORDS)


@app.command(epilog=EXTRACT_EXAMPLES)
@handles_errors
def extract(
    ctx: typer.Context,
    backbone: Annotated[str, typer.Option("--backbone", "-b", help="Backbone name (`featx backbones`), "
                                          "or timm:<name> / tv:<name>.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Image folder (class-per-folder, optionally under "
                                       "train/val/test) or a CSV manifest path,label[,split].")],
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Store path (default: cache/<dataset>--"
                                                     "<backbone>--<layer>-<pool>--<hash>.h5).")] = None,
    weights: Annotated[str, typer.Option(help="imagenet (library weights), none (random init), PATH of a "
                                         "state dict / checkpoint, or the run folder (or ensemble.json) of "
                                         "`featx finetune --seeds K`: its members' features side by side.")]
    = "imagenet",
    layer: Annotated[Optional[str], typer.Option(help="Tap point (see `featx backbones`); module:<path> for any "
                                                 "module.")] = None,
    pool: Annotated[Optional[Pool], typer.Option(help="Pooling of a feature map (default: the layer's).")] = None,
    with_logits: Annotated[bool, typer.Option("--with-logits", help="Also store the source model's ImageNet "
                                              "logits (for LEEP / NCE).")] = False,
    tta: Annotated[Tta, typer.Option(help="hflip: mean of the image's and its mirror's features.")] = Tta.none,
    dtype: Annotated[Dtype, typer.Option(help="Stored feature dtype.")] = Dtype.float32,
    image_size: Annotated[Optional[int], typer.Option(help="Override the input size (crop ratio kept).")] = None,
    label_from_name: Annotated[Optional[str], typer.Option(help="Regex whose group 1 in the file name is the "
                                                           "label, e.g. '^(.+?)_'.")] = None,
    split_seed: Annotated[int, typer.Option(help="Seed of the hash split used when the data has none (a row's split "
                                            "depends only on its id, class and this seed).")] = 0,
    split_ratios: Annotated[str, typer.Option(help="train,val,test fractions of that split.")] = "0.8,0.1,0.1",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N | mps.", callback=check_device)] = "auto",
    batch_size: Annotated[Optional[int], typer.Option(help="Images per batch (default 32 with OpenVINO, 10 with "
                                                      "PyTorch on CPU, 64 on CUDA).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Decoding threads (default: a quarter of the cores, at "
                                                   "least 2, on CPU; all but one beside a GPU; 0 decodes in the "
                                                   "main thread).")] = None,
    streams: Annotated[Optional[int], typer.Option(help="Batches in flight at once (default: the runtime's "
                                                   "choice for this machine).")] = None,
    runtime: Annotated[Runtime, typer.Option(help="auto: OpenVINO on CPU (converted once, cached under "
                                             "cache/models), PyTorch on a GPU; an existing store keeps its "
                                             "runtime.")] = Runtime.auto,
    precision: Annotated[Precision, typer.Option(help="auto: the store's precision if it exists, else bf16 where "
                                                 "the hardware has it natively (AVX-512 BF16 / AMX CPU, CUDA; fp16 "
                                                 "on older GPUs), fp32 elsewhere. Part of the fingerprint.")]
    = Precision.auto,
    channels_last: Annotated[bool, typer.Option("--channels-last/--no-channels-last",
                                                help="channels_last memory layout (faster for convnets).")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Build the store afresh beside the old one, which it "
                                            "replaces at the end (an interrupted run leaves the old one).")] = False,
    missing: Annotated[Missing, typer.Option(help="Rows whose image file is gone: drop them (default) or keep "
                                             "them; either way the run says how many.")] = Missing.drop,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Try unreadable images again even if their "
                                               "file did not change (changed ones are always retried).")] = False,
    hash_files: Annotated[bool, typer.Option("--hash", help="Also keep a content hash per row: a file whose time "
                                             "changed but whose bytes did not is not re-extracted.")] = False,
    relocate: Annotated[bool, typer.Option("--relocate", help="Accept a store made from another data root (same "
                                           "ids under a new mount point) and point it at --data.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    shard: Annotated[str, typer.Option(help="i/n: extract the i-th of n blocks of the sorted ids into "
                                       "<store>.shard-i-of-n.h5; auto: from a SLURM array task or torchrun rank; "
                                       "none: never shard.", rich_help_panel=CLUSTER)] = "auto",
    merge: Annotated[bool, typer.Option("--merge/--no-merge", help="The shard that completes the set merges them "
                                        "into the store.", rich_help_panel=CLUSTER)] = True,
    slurm: Annotated[bool, typer.Option("--slurm", help="Submit --shards array tasks with sbatch instead of "
                                        "extracting here.", rich_help_panel=CLUSTER)] = False,
    shards: Annotated[int, typer.Option(help="Array tasks for --slurm.", rich_help_panel=CLUSTER)] = 1,
    partition: Annotated[Optional[str], typer.Option(help="SLURM partition.", rich_help_panel=CLUSTER)] = None,
    time_limit: Annotated[Optional[str], typer.Option("--time", help="SLURM time limit per task, e.g. 02:00:00.",
                                                      rich_help_panel=CLUSTER)] = None,
    gpus_per_task: Annotated[Optional[int], typer.Option(help="GPUs per task.", rich_help_panel=CLUSTER)] = None,
    cpus_per_task: Annotated[Optional[int], typer.Option(help="CPUs per task.", rich_help_panel=CLUSTER)] = None,
    mem: Annotated[Optional[str], typer.Option(help="Memory per task, e.g. 16G.", rich_help_panel=CLUSTER)] = None,
    account: Annotated[Optional[str], typer.Option(help="SLURM account.", rich_help_panel=CLUSTER)] = None,
    max_running: Annotated[Optional[int], typer.Option(help="At most this many tasks at once (the array's %).",
                                                       rich_help_panel=CLUSTER)] = None,
    wait: Annotated[bool, typer.Option("--wait", help="With --slurm: return when every task has ended.",
                                       rich_help_panel=CLUSTER)] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="With --slurm: print the sbatch script, submit "
                                          "nothing.", rich_help_panel=CLUSTER)] = False,
) -> None:
    """Embed every image under --data with a frozen backbone into an HDF5 store.

    Re-running the same command is a cache hit when no file changed (the model is
    not loaded). New images are appended, changed ones re-extracted in place,
    deleted ones follow --missing, changed labels and splits are rewritten without
    re-extracting; an interrupted run resumes where it stopped.
    """
    if not slurm and (dry_run or wait or shards != 1):
        raise OptionError("--shards, --wait and --dry-run go with --slurm (or run `--shard i/n` per task yourself)")
    options = ExtractOptions(
        backbone, data, out=out_path, weights=weights, layer=layer, pool=value(pool), tta=value(tta),
        dtype=value(dtype), with_logits=with_logits, image_size=image_size, label_from_name=label_from_name,
        split_seed=split_seed, split_ratios=parse_ratios(split_ratios), device=device, batch_size=batch_size,
        workers=workers, streams=streams, runtime=value(runtime), precision=value(precision),
        channels_last=channels_last, overwrite=overwrite, missing=value(missing), retry_failed=retry_failed,
        hash=hash_files, relocate=relocate, shard=shard, merge=merge, progress=not quiet)
    if slurm:
        from ..jobs.slurm import SlurmOptions

        resources = SlurmOptions(shards=shards, partition=partition, time=time_limit, gpus_per_task=gpus_per_task,
                                 cpus_per_task=cpus_per_task, mem=mem, account=account, max_running=max_running)
        _submit(ctx, options, resources, wait=wait, dry_run=dry_run)
        return
    from ..extraction.run import extract as run

    try:
        res = run(options)
    except Stopped as exc:
        from ..jobs.slurm import requeue_self

        task = requeue_self() if exc.signum == signal.SIGUSR1 else None
        if task:
            progress(f"requeued SLURM task {task}: it resumes from the store when it starts again")
        raise
    if res.shard is not None:
        progress(f"shard {res.shard.label} ({res.shard.origin}): {res.path}")
    changes = sync_line(res.sync)
    if res.cache_hit:
        out(f"cache hit: {res.path} already holds all {res.n_rows} rows; nothing to do"
            + (f" ({changes})" if changes else ""))
        return
    if changes:
        out(f"synced with the data: {changes}")
    if not res.n_new and not res.failures:
        out(f"updated {res.path} without extracting ({res.n_rows} rows)")
        return
    kind = "new " if not (res.sync.get("changed") or res.sync.get("retried")) else ""
    out(f"wrote {res.n_new} {kind}rows to {res.path} ({res.n_rows} rows in all) in {res.seconds:.1f} s, "
        f"{res.images_per_s:.1f} img/s, {res.runtime} {res.precision or 'fp32'} on {res.device or 'no device'}"
        + (f" ({res.note})" if res.note else "") + f"; {len(res.failures)} unreadable")
    if res.timings.get("loop"):
        out(time_line(res.timings))
    for image_id, reason in res.failures[:10]:
        out(f"  failed: {image_id}: {reason}")
    if len(res.failures) > 10:
        out(f"  ... and {len(res.failures) - 10} more (see `featx info {res.path}`)")
    _merged_line(res)


def time_line(t: dict[str, float]) -> str:
    """Where the time went: start-up, decoding (thread-seconds, overlapped), model, writing (background)."""
    starved = t["data_wait"] / t["loop"] if t["loop"] else 0.0
    n = int(t["decode_threads"])
    return (f"time: start-up {t['start']:.1f} s; decode {t['decode']:.1f} s over {n} thread{'s' * (n != 1)} "
            f"beside the model; model {t['infer']:.1f} s; write {t['write']:.1f} s in the background; "
            f"the model waited {t['data_wait']:.1f} s for images ({starved:.0%})")


def _merged_line(res) -> None:
    if res.merged is not None:
        m = res.merged
        out(f"merged {m.shards} shards into {m.path} ({m.rows} rows, {m.failures} unreadable)")


def _submit(ctx: typer.Context, options: ExtractOptions, slurm: SlurmOptions, *, wait: bool, dry_run: bool) -> None:
    """Write the array script running this very command (submission options replaced by --shard) and sbatch it."""
    from ..extraction.plan import plan_extraction
    from ..jobs.slurm import extract_script, submit

    store = plan_extraction(options).out.resolve()  # bad options fail here, not in every task
    args = ["extract", *command_args(ctx, exclude=SUBMISSION | {"shard"})]
    if options.out is None:
        args += ["--out", str(store)]
    script = extract_script(args, store=store, options=slurm)
    if dry_run:
        out(script.rstrip())
        return
    job, path = submit(script, store, wait=wait)
    out(f"submitted SLURM array job {job}: {slurm.shards} tasks, script {path}, logs {path.parent / 'logs'}")
    out(f"`featx status {store}` shows the shards" + ("; every task has ended" if wait else ""))
