"""`featx finetune`: train a backbone's last blocks and a new head on a labelled image folder."""

from __future__ import annotations

from enum import Enum
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from ..errors import OptionError
from ._common import EXIT_INTERRUPTED, handles_errors, out, progress
from .app import app
from .options import (
    ClassWeight,
    OverwriteRunOpt,
    Precision,
    RunsDirOpt,
    check_device,
    parse_ratios,
    value,
)

FINETUNE_EXAMPLES = """
Examples:

  featx finetune --backbone efficientnet_lite0 --data ../shared/data/monet-sisley --unfreeze 2 --epochs 20

  featx extract --backbone efficientnet_lite0 --weights runs/ft-monet-sisley-efficientnet_lite0-u2/best.pt
  --data ../shared/data/monet-sisley

  featx predict runs/ft-monet-sisley-efficientnet_lite0-u2/best.pt painting.jpg --top-k 2

  featx finetune -b vgg16 --weights none --unfreeze all --data DIR      (the from-scratch baseline)

  featx finetune -b efficientnet_lite0 --data DIR --head 384,128 --optimizer rmsprop --scheduler plateau

  featx finetune -b efficientnet_lite0 --data DIR --unfreeze 2 --resume     (continue an interrupted run)

  featx finetune -b efficientnet_lite0,efficientnet_lite1 --data DIR --seeds 2   (an ensemble of 4 networks)
"""

Optimizer = Enum("Optimizer", {v: v for v in ("adamw", "sgd", "rmsprop")}, type=str)
Scheduler = Enum("Scheduler", {v: v for v in ("cosine", "plateau", "constant")}, type=str)
Average = Enum("Average", {v: v for v in ("none", "ema", "swa")}, type=str)


@app.command(epilog=FINETUNE_EXAMPLES)
@handles_errors
def finetune(
    backbone: Annotated[str, typer.Option("--backbone", "-b", help="Backbone name (`featx backbones`); several "
                                          "separated by commas (e.g. efficientnet_lite0,efficientnet_lite1) train "
                                          "--seeds networks of each and average them: an ensemble for featx "
                                          "predict.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Image folder (class-per-folder, optionally under "
                                       "train/val/test) or a CSV manifest path,label[,split].")],
    unfreeze: Annotated[str, typer.Option(help="Blocks trained from the top: N (0 = the new head only) or all "
                                          "(every layer; with --weights none: training from scratch).")] = "2",
    weights: Annotated[str, typer.Option(help="imagenet, none (random init) or PATH of a state dict / "
                                         "checkpoint to start from.")] = "imagenet",
    head: Annotated[str | None, typer.Option(help="Hidden widths of the new head, e.g. 384,128 (each "
                                                "Linear + BatchNorm + ReLU + Dropout); default: one Linear.")]
    = None,
    dropout: Annotated[float, typer.Option(help="Dropout in the head.")] = 0.2,
    head_batchnorm: Annotated[bool, typer.Option("--head-batchnorm/--no-head-batchnorm",
                                                 help="BatchNorm after each hidden layer of the head.")] = True,
    epochs: Annotated[int, typer.Option(help="Epochs of the learning-rate schedule: the most a run trains (--cv "
                                        "chooses how many; without it early stopping may stop sooner).")] = 12,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 32,
    optimizer: Annotated[Optimizer, typer.Option(help="Optimiser.")] = Optimizer.adamw,
    lr: Annotated[float, typer.Option(help="Learning rate of the head.")] = 1e-3,
    backbone_lr: Annotated[float, typer.Option(help="Learning rate of the backbone's blocks, as a fraction of "
                                               "--lr.")] = 1.0,
    weight_decay: Annotated[float, typer.Option(help="Weight decay (weights only, not biases or norms).")] = 1e-4,
    momentum: Annotated[float, typer.Option(help="Momentum (sgd, rmsprop).")] = 0.9,
    warmup: Annotated[int, typer.Option(help="Epochs of linear learning-rate warm-up.")] = 1,
    scheduler: Annotated[Scheduler, typer.Option(help="After warm-up: cosine decay, plateau (halve after 2 "
                                                 "epochs without a better val macro F1) or constant.")]
    = Scheduler.cosine,
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing of the cross-entropy.")] = 0.1,
    class_weight: Annotated[ClassWeight, typer.Option(help="balanced: weight the loss by inverse class "
                                                      "frequency.")] = ClassWeight.none,
    patience: Annotated[int, typer.Option(help="Stop after this many epochs without a better validation macro F1 "
                                          "(0: never).")] = 5,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Augment training images (never "
                                          "validation or test).")] = True,
    rotation: Annotated[float, typer.Option(help="Random rotation within +- this many degrees.")] = 15.0,
    zoom: Annotated[str, typer.Option(help="Random zoom range LOW,HIGH (e.g. 0.5,1.5), or one factor Z for "
                                      "1/Z,Z.")] = "0.8,1.25",
    hflip: Annotated[bool, typer.Option("--hflip/--no-hflip", help="Random horizontal flips.")] = True,
    vflip: Annotated[bool, typer.Option("--vflip", help="Random vertical flips too.")] = False,
    views: Annotated[int, typer.Option(help="Augmented views per training image computed through the frozen "
                                       "trunk (each epoch picks one).")] = 4,
    cache_trunk: Annotated[bool, typer.Option("--cache-trunk/--no-cache-trunk", help="Compute the frozen blocks "
                                              "once per image and view and train on their output.")] = True,
    lp_ft: Annotated[bool, typer.Option("--lp-ft/--no-lp-ft", help="Start the linear head from the frozen linear "
                                        "probe fitted on the training rows (LP-FT).")] = True,
    freeze_bn: Annotated[bool, typer.Option("--freeze-bn/--train-bn", help="Keep the ImageNet statistics of the "
                                            "trained blocks' BatchNorm layers (eval mode) instead of updating "
                                            "them from training batches.")] = True,
    llrd: Annotated[float, typer.Option(help="Layer-wise learning-rate decay: each trainable block below the top "
                                        "learns this factor slower (1: off).")] = 1.0,
    mixup: Annotated[float, typer.Option(help="Mixup alpha on the frozen trunk's output (0: off).")] = 0.0,
    average: Annotated[Average, typer.Option(help="Weight averaging for evaluation and best.pt: ema (every step, "
                                             "--ema-decay) or swa (epoch ends of the second half).")] = Average.none,
    ema_decay: Annotated[float, typer.Option(help="Decay of --average ema per step.")] = 0.99,
    tta: Annotated[bool, typer.Option("--tta/--no-tta", help="Test-time augmentation: score each image by the "
                                      "mean of its and its mirror image's logits (the test report, the frozen "
                                      "probe's features and featx predict).")] = True,
    cv: Annotated[int, typer.Option(help="Folds of the training rows (train + val) choosing the epoch count "
                                    "by stratified k-fold CV, then one run on all of them; 0: the val split "
                                    "and early stopping decide.")] = 3,
    search: Annotated[bool, typer.Option("--search", help="Also choose the recipe by the k-fold CV from a small "
                                         "grid (docs/finetuning.md); needs --cv.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of everything random: a CPU run repeats exactly.")] = 0,
    seeds: Annotated[int, typer.Option(help="Train K networks with seeds --seed, --seed+1, ... (run folders "
                                       "seed-<s>/ and ensemble.json) and average their probabilities: an "
                                       "ensemble for featx predict and featx extract --weights.")] = 1,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N | mps.", callback=check_device)] = "auto",
    precision: Annotated[Precision, typer.Option(help="auto: bf16/fp16 autocast on CUDA, fp32 on CPU.")]
    = Precision.auto,
    channels_last: Annotated[bool, typer.Option("--channels-last/--no-channels-last",
                                                help="channels_last memory layout (faster for convnets, CPU included).")]
    = True,
    workers: Annotated[int | None, typer.Option(help="DataLoader worker processes (default: CPUs - 1).")] = None,
    label_from_name: Annotated[str | None, typer.Option(help="Regex whose group 1 in the file name is the "
                                                           "label.")] = None,
    split_seed: Annotated[int, typer.Option(help="Seed of the hash split used when the data has none.")] = 0,
    split_ratios: Annotated[str, typer.Option(help="train,val,test fractions of that split.")] = "0.8,0.1,0.1",
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default: "
                                                    "<runs-dir>/ft-<dataset>-<backbone>-u<N>).")] = None,
    name: Annotated[str | None, typer.Option(help="Run name: <runs-dir>/NAME.")] = None,
    runs_dir: RunsDirOpt = Path("runs"),
    overwrite: OverwriteRunOpt = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in the run folder from its last.pt "
                                         "(same options; --epochs may grow).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Fine-tune a backbone's last blocks with a new head; write best.pt, last.pt, history, curves and the
    test report (same files as `featx fit`)."""
    from ..learn.finetune.config import (
        Augment,
        FinetuneCfg,
        parse_pair,
        parse_unfreeze,
        parse_widths,
    )
    from ..learn.finetune.train import finetune as run
    from ..learn.finetune.verdict import verdict_text

    names = [b.strip() for b in backbone.split(",") if b.strip()]
    if not names:
        raise OptionError(f"--backbone {backbone!r}: name a backbone (`featx backbones` lists them)")
    several = seeds != 1 or len(names) > 1
    if several:
        from ..learn.finetune.ensemble import check_seeds, finetune_ensemble

        check_seeds(seeds)
        run = partial(finetune_ensemble, seeds=seeds, backbones=names)

    cfg = FinetuneCfg(
        backbone=names[0], weights=weights, unfreeze=parse_unfreeze(unfreeze), hidden=parse_widths(head),
        dropout=dropout, batchnorm=head_batchnorm, epochs=epochs, batch_size=batch_size, optimizer=value(optimizer),
        lr=lr, backbone_lr=backbone_lr, weight_decay=weight_decay, momentum=momentum, warmup=warmup,
        scheduler=value(scheduler), label_smoothing=label_smoothing, class_weight=value(class_weight)
        if class_weight != ClassWeight.none else None, patience=patience,
        augment=Augment(rotation=rotation, zoom=parse_pair(zoom, "--zoom"), hflip=hflip, vflip=vflip, enabled=augment),
        views=views, cache_trunk=cache_trunk, seed=seed, precision=value(precision), channels_last=channels_last,
        lp_ft=lp_ft, freeze_bn=freeze_bn, llrd=llrd, mixup=mixup, average=value(average), ema_decay=ema_decay, tta=tta, cv=cv)
    if search and not cv:
        raise OptionError("--search compares recipes by the k-fold CV: drop --cv 0 (or --search)")
    try:
        res = run(data, cfg, out=out_dir, name=name, runs_dir=runs_dir, resume=resume, overwrite=overwrite,
                  device=device, workers=workers, label_from_name=label_from_name, split_seed=split_seed,
                  split_ratios=parse_ratios(split_ratios), progress=not quiet, echo=progress,
                  **({"search": True} if search else {}))
    except KeyboardInterrupt:
        progress("interrupted; the same command with --resume continues from the last finished epoch (last.pt)")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    m = res.metrics
    if several:
        for line in ensemble_lines(res):
            out(line)
        return
    if m is not None:
        ev = m["evaluation"]
        chosen = (f"val {m['val_accuracy']:.3f}" if m.get("val_accuracy") is not None else
                  f"{ev['cv_folds']}-fold CV {m['cv_accuracy']:.3f}" if m.get("cv_accuracy") is not None else "")
        out(f"{m['label']}: {ev['mode']} acc {m['accuracy_text']} (n={ev['n_eval']}{', ' + chosen if chosen else ''}), "
            f"macro F1 {m['macro_f1']:.3f}, best epoch {m['best_epoch']} of {m['epochs_run']}, "
            f"{res.seconds:.0f} s -> {res.out}")
    out(f"checkpoint: {res.best} (featx extract --weights {res.best}, featx predict {res.best} IMAGE)")
    if m is not None and m.get("verdict"):
        out(verdict_text(m["verdict"]).rstrip())


def ensemble_lines(res) -> list[str]:
    """What `featx finetune --seeds K` prints at the end: each member, the ensemble, where it is, the verdict."""
    from ..learn.finetune.verdict import verdict_text

    lines = []
    mixed = len(set(res.backbones)) > 1  # several backbones: no featx extract
    for b, s, r in zip(res.backbones, res.seeds, res.members):
        if r.metrics is not None:
            lines.append(f"  {b + ' ' if mixed else ''}seed {s}: {r.metrics['evaluation']['mode']} acc "
                         f"{r.metrics['accuracy_text']}, macro F1 {r.metrics['macro_f1']:.3f} -> {r.out}")
    m = res.metrics
    if m is not None:
        ev = m["evaluation"]
        lines.append(f"{m['label']}: {ev['mode']} acc {m['accuracy_text']} (n={ev['n_eval']}), macro F1 "
                     f"{m['macro_f1']:.3f}, {res.seconds:.0f} s -> {res.out}")
    extract = "" if mixed else f"featx extract --weights {res.out}, "
    lines.append(f"ensemble: {res.manifest} ({extract}featx predict {res.out} IMAGE)")
    if m is not None and m.get("verdict"):
        lines.append(verdict_text(m["verdict"]).rstrip())
    return lines
