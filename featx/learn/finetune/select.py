"""Choosing the epoch count (and under ``--search`` the recipe) by stratified k-fold CV on the training rows.

``--cv K`` (default 3): the training rows (train + val: the val split joins training, see
:func:`merge_val`) are cut into K stratified folds; for each fold a network trains on the other K-1
for ``--epochs`` epochs (same schedule, same recipe) and is scored on the held-out fold after every
epoch, all on the one cached trunk. The epoch with the best mean held-out macro F1 is the epoch count
of the final run on all training rows; with LP-FT that may be 0 epochs, the frozen probe itself, when no
epoch of training beat it. Test rows are in no fold (:attr:`Selection.seen_rows`).
``--search`` does the same for each recipe of :data:`SEARCH_GRID` and keeps the best (recipe, epoch).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ...data.dataset import ImageDataset
from ...errors import DataError
from .config import FinetuneCfg

SEARCH_GRID: tuple[tuple[str, dict], ...] = (
    ("default", {}),
    ("no LP-FT", {"lp_ft": False}),
    ("mixup 0.2", {"mixup": 0.2}),
    ("EMA", {"average": "ema"}),
    ("SWA", {"average": "swa"}),
    ("backbone lr 0.3", {"backbone_lr": 0.3}),
    ("lr x0.3", {"lr_scale": 0.3}),
    ("lr x3", {"lr_scale": 3.0}),
)
"""The ``--search`` grid: changes to the command's recipe that keep its cached trunk (``lr_scale``
multiplies ``--lr``)."""


def apply(cfg: FinetuneCfg, overrides: dict) -> FinetuneCfg:
    """``cfg`` with a grid entry's changes."""
    o = dict(overrides)
    if "lr_scale" in o:
        o["lr"] = cfg.lr * o.pop("lr_scale")
    return dataclasses.replace(cfg, **o)


def candidates(cfg: FinetuneCfg, search: bool) -> list[tuple[str, FinetuneCfg]]:
    """The recipes to compare: the command's own, plus the grid's under ``--search`` (duplicates dropped)."""
    out = [("command", cfg)]
    if search:
        for name, o in SEARCH_GRID[1:]:
            c = apply(cfg, o)
            if all(c != have for _, have in out):
                out.append((name, c))
    return out


def merge_val(ds: ImageDataset) -> ImageDataset:
    """The dataset with its val rows moved to train (the final run of ``--cv`` trains on both)."""
    return dataclasses.replace(ds, split=tuple("train" if s == "val" else s for s in ds.split))


@dataclass
class Selection:
    """What the k-fold CV chose, and the curves it chose from."""

    name: str
    cfg: FinetuneCfg
    epochs: int
    folds: int
    table: list[dict]  # per recipe: name, changes, mean/se per epoch of held-out macro F1 and accuracy, best
    seconds: float
    seen_rows: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, int))

    @property
    def best(self) -> dict:
        return next(t for t in self.table if t["name"] == self.name)

    def to_dict(self) -> dict:
        return {"recipe": self.name, "epochs": self.epochs, "folds": self.folds, "seconds": self.seconds,
                "cv_macro_f1": self.best["best_macro_f1"], "cv_accuracy": self.best["best_accuracy"],
                "recipes": self.table}

    @classmethod
    def from_dict(cls, d: dict, cfg: FinetuneCfg) -> Selection:
        """The selection a checkpoint recorded (:meth:`to_dict`), with the configuration it chose."""
        return cls(d["recipe"], cfg, int(d["epochs"]), int(d["folds"]), d["recipes"], float(d["seconds"]))

    def lines(self) -> list[str]:
        out = []
        for t in self.table:
            star = " <- chosen" if t["name"] == self.name else ""
            out.append(f"  {t['name']}: best epoch {t['best_epoch']}, held-out macro F1 {t['best_macro_f1']:.3f} "
                       f"+- {t['best_macro_f1_se']:.3f}, accuracy {t['best_accuracy']:.3f} (before training "
                       f"{t['start_macro_f1']:.3f}){star}")
        return out


def fold_splits(ds: ImageDataset, rows: np.ndarray, folds: int, seed: int) -> list[tuple[str, ...]]:
    """One split per fold: ``train`` / ``val`` within ``rows``, every other row in no split."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(ds.labels)[rows]
    counts = np.bincount(y)
    if len(y) and counts[counts > 0].min() < folds:
        raise DataError(f"--cv {folds}: a class has fewer than {folds} training images; use a smaller --cv "
                        "or --cv 0 (the val split decides)")
    out = []
    for tr, va in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(rows)), y):
        split = np.full(len(ds), "", dtype=object)
        split[rows[tr]], split[rows[va]] = "train", "val"
        out.append(tuple(split))
    return out


def _curves(cfg: FinetuneCfg, ds: ImageDataset, splits, make_trainer, lp_ft: Callable, echo, name: str) -> dict:
    f1 = np.zeros((len(splits), cfg.epochs))
    acc = np.zeros_like(f1)
    start = np.zeros((len(splits), 2))
    for k, split in enumerate(splits):
        t = make_trainer(cfg, dataclasses.replace(ds, split=split))
        t.fill_trunk()  # cached already: the held-out fold's eval views, nothing else
        lp_ft(t)
        first = t.evaluate("val")  # before training: with LP-FT, the frozen probe's scores
        start[k] = first["val_macro_f1"], first["val_accuracy"]
        for e in range(cfg.epochs):
            row = t.run_epoch()
            f1[k, e], acc[k, e] = row["val_macro_f1"], row["val_accuracy"]
        echo(f"  {name}, fold {k + 1}/{len(splits)}: held-out macro F1 by epoch "
             f"{' '.join(f'{v:.2f}' for v in f1[k])}")
    return {"f1": f1, "acc": acc, "start": start}


def select_recipe(ds: ImageDataset, rows: np.ndarray, recipes: list[tuple[str, FinetuneCfg]], folds: int,
                  make_trainer: Callable, lp_ft: Callable, echo: Callable[[str], None] = lambda s: None) -> Selection:
    """K-fold curves of each recipe on ``rows`` (the training rows only) and the best (recipe, epoch count).

    ``make_trainer(cfg, fold_dataset)`` builds a fold's trainer on the shared trunk; ``lp_ft(trainer)``
    starts its head from its own fold's probe when the recipe says so.
    """
    t0 = time.perf_counter()
    seed = recipes[0][1].seed
    splits = fold_splits(ds, rows, folds, seed)
    table, best = [], None
    for name, cfg in recipes:
        c = _curves(cfg, ds, splits, make_trainer, lp_ft, echo, name)
        # epoch 0 is the network before training: with LP-FT, the frozen probe itself, which the CV may prefer
        f1 = np.concatenate([c["start"][:, :1], c["f1"]], axis=1)
        acc = np.concatenate([c["start"][:, 1:], c["acc"]], axis=1)
        mean_f1, mean_acc = f1.mean(0), acc.mean(0)
        se_f1 = f1.std(0, ddof=1) / np.sqrt(folds)
        first = 0 if cfg.lp_ft and not cfg.hidden else 1  # a random head is never a candidate
        e = first + int(np.argmax(mean_f1[first:]))  # the first of equal means: fewer epochs
        table.append({"name": name, "changes": _changes(recipes[0][1], cfg), "best_epoch": e,
                      "best_macro_f1": float(mean_f1[e]), "best_macro_f1_se": float(se_f1[e]),
                      "best_accuracy": float(mean_acc[e]), "start_macro_f1": float(mean_f1[0]),
                      "start_accuracy": float(mean_acc[0]), "macro_f1_by_epoch": [float(v) for v in mean_f1[1:]],
                      "accuracy_by_epoch": [float(v) for v in mean_acc[1:]]})
        if best is None or mean_f1[e] > best[2] + 1e-9:
            best = (name, cfg, float(mean_f1[e]), e)
    seen = np.unique(np.concatenate([np.flatnonzero(np.asarray(s) != "") for s in splits]))
    return Selection(best[0], best[1], best[3], folds, table, time.perf_counter() - t0, seen)


def _changes(base: FinetuneCfg, cfg: FinetuneCfg) -> dict:
    a, b = base.to_dict(), cfg.to_dict()
    return {k: b[k] for k in b if a.get(k) != b[k]}
