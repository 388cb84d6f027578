"""``history.csv`` (one row per epoch) and ``curves.png`` (loss, macro F1 and learning rate per epoch,
with the epochs where the rate was lowered marked, as seed 002 draws its training curves)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ...report.plots import new_figure, write_figure
from ...report.runs import write_csv

COLUMNS = ("epoch", "train_loss", "train_accuracy", "train_macro_f1", "val_loss", "val_accuracy", "val_macro_f1",
           "lr", "lr_backbone", "seconds", "images_per_s", "lr_lowered", "best")


def write_history(path: Path, rows: Sequence[dict]) -> Path:
    return write_csv(path, [{k: r.get(k) for k in COLUMNS} for r in rows])


def draw_curves(path: Path, rows: Sequence[dict], title: str = "") -> Path:
    """Three panels: train/val loss, train/val macro F1 (best epoch starred), learning rates (log scale)."""
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    lowered = [r["epoch"] for r in rows if r.get("lr_lowered")]
    fig = new_figure((13, 3.8))
    axes = fig.subplots(1, 3)
    for ax, key, name in ((axes[0], "loss", "loss"), (axes[1], "macro_f1", "macro F1")):
        ax.plot(epochs, [r[f"train_{key}"] for r in rows], "o-", ms=3, label="train")
        if any(r.get(f"val_{key}") is not None for r in rows):  # --cv: the final run has no val rows
            ax.plot(epochs, [r[f"val_{key}"] for r in rows], "s-", ms=3, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    best = [r for r in rows if r.get("best") and r.get("val_macro_f1") is not None]
    if best:
        b = best[-1]
        axes[1].plot([b["epoch"]], [b["val_macro_f1"]], "*", ms=14, color="gold", mec="k", label="best")
    axes[2].plot(epochs, [r["lr"] for r in rows], "o-", ms=3, label="head")
    if any(r["lr_backbone"] for r in rows):  # --unfreeze 0 trains no backbone block
        axes[2].plot(epochs, [r["lr_backbone"] for r in rows], "s-", ms=3, label="backbone")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("learning rate (end of epoch)")
    axes[2].grid(alpha=0.3)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for e in lowered:
            ax.axvline(e, color="crimson", ls="--", lw=0.8)
        ax.legend(fontsize=8)
    if lowered:
        axes[2].set_title(f"rate lowered after epoch {', '.join(map(str, lowered))}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return write_figure(fig, path)
