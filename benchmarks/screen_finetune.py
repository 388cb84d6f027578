"""Screen the fine-tuning recipe's levers on one painting set: held-out macro F1 after every epoch.

    python benchmarks/screen_finetune.py [--data ../shared/data/impressionists] [--folds 0,1] [--recipes all]

One cached trunk (``--views`` augmented views and the eval and flipped views of every image, the
default recipe's seed) serves every recipe and fold; each recipe trains on an outer fold's training rows
(stratified 5-fold, the folds of ``bench_finetune.py``) for the whole schedule, LP-FT head first, and is
scored on the fold's held-out rows after every epoch. This is a **screen**: it looks at the held-out rows
of the folds it uses, so its figures are optimistic and only rank the levers; the default recipe is then
checked by ``bench_finetune.py``'s honest protocol (the epoch count chosen by k-fold CV inside the
training rows) and on sets the screen never saw. Writes ``benchmarks/results/finetune-screen.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from bench_finetune import outer_fold  # the same outer folds

from featx.data.discover import load_dataset
from featx.files import write_json, write_text
from featx.learn.finetune.config import FinetuneCfg
from featx.learn.finetune.select import apply
from featx.learn.finetune.train import Trainer, lp_ft

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

RECIPES: dict[str, dict] = {
    "default": {},  # the base: the recipe before this screen
    "mixup 0.4": {"mixup": 0.4},
    "EMA": {"average": "ema"},
    "SWA": {"average": "swa"},
    "8 views": {"views": 8},
    "backbone lr 0.3": {"backbone_lr": 0.3},
    "lr x0.3": {"lr_scale": 0.3},
    "llrd 0.5": {"llrd": 0.5},
    "flip TTA": {"tta": True},
    "dropout 0.5 wd 0.05": {"dropout": 0.5, "weight_decay": 0.05},
    "blr 0.3 + TTA": {"backbone_lr": 0.3, "tta": True},
    "blr 1 + TTA": {"backbone_lr": 1.0, "tta": True},
    "blr 0.3 + TTA + mixup 0.4": {"backbone_lr": 0.3, "tta": True, "mixup": 0.4},
    "blr 0.3 + TTA + 8 views": {"backbone_lr": 0.3, "tta": True, "views": 8},
    "blr 1 + TTA + lr x2": {"backbone_lr": 1.0, "tta": True, "lr_scale": 2.0},
    "blr 1 + TTA + mixup 0.4": {"backbone_lr": 1.0, "tta": True, "mixup": 0.4},
    "blr 1 + TTA + 20 epochs": {"backbone_lr": 1.0, "tta": True, "epochs": 20},
    "blr 1 + TTA + balanced": {"backbone_lr": 1.0, "tta": True, "class_weight": "balanced"},
    "blr 1 + TTA + warm-up 3": {"backbone_lr": 1.0, "tta": True, "warmup": 3},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def shared_trunk(ds, base: FinetuneCfg, views: int, *, progress: bool = False) -> Trainer:
    """A trainer whose filled trunk cache serves every recipe and outer fold: each painting's ``views``
    augmented views (the base recipe's seed) and its eval and mirrored views."""
    all_train = dataclasses.replace(ds, split=tuple("train" for _ in ds.split))
    filler = Trainer(dataclasses.replace(base, views=views, cv=3, tta=True), all_train, progress=progress)
    filler.fill_trunk()
    return filler


def train_curve(t: Trainer) -> tuple[list[float], list[tuple]]:
    """LP-FT, then the recipe's epochs; the held-out macro F1 and ``t.predict("val")`` before training
    (epoch 0: the probe) and after every epoch."""
    lp_ft(t)
    curve, probas = [t.evaluate("val")["val_macro_f1"]], [t.predict("val")]
    for _ in range(t.cfg.epochs):
        curve.append(t.run_epoch()["val_macro_f1"])
        probas.append(t.predict("val"))
    return curve, probas


def screen(data: Path, folds: list[int], names: list[str], views: int, epochs: int, out: Path, machine: str,
           backbone: str = "efficientnet_lite0", unfreeze: int = 2) -> dict:
    ds = load_dataset(data)
    # the recipe before this screen (FinetuneCfg's defaults then); "blr 1 + TTA" is the default it chose
    base = FinetuneCfg(backbone, unfreeze=unfreeze, cv=0, patience=0, epochs=epochs, backbone_lr=0.1, tta=False,
                       class_weight=None)
    recipes = {name: apply(base, RECIPES[name]) for name in names}
    for name, cfg in recipes.items():  # before the trunk fill, which takes minutes
        if cfg.views > views:
            raise SystemExit(f"error: recipe {name!r} reads {cfg.views} views per painting; run with --views {cfg.views}")
    t0 = time.perf_counter()
    filler = shared_trunk(ds, base, views, progress=True)
    res = {"data": ds.name, "n_images": len(ds), "views_cached": views, "epochs": epochs, "machine": machine,
           "fill_seconds": time.perf_counter() - t0, "base": base.to_dict(), "recipes": {}}
    old = out.with_suffix(".json")
    if old.exists():  # another round on the same set adds its folds and recipes to the earlier ones
        prev = json.loads(old.read_text())
        if (prev["data"], prev["epochs"], prev["views_cached"]) == (ds.name, epochs, views):
            res["recipes"], res["notes"] = prev["recipes"], prev.get("notes", [])
    log(f"trunk: {len(filler.trunk.acts)} activations in {res['fill_seconds']:.0f} s")
    for name, cfg in recipes.items():
        other = [backbone] * (backbone != "efficientnet_lite0") + [f"--unfreeze {unfreeze}"] * (unfreeze != 2)
        key = f"{name} [{', '.join(other)}]" if other else name  # another trunk: its own rows
        have = res["recipes"].get(key, {}).get("folds", [])
        per = [f for f in have if f["fold"] not in folds]
        for k in folds:
            t1 = time.perf_counter()
            curve, probas = train_curve(Trainer(cfg, outer_fold(ds, 5, k, "val"), progress=False, trunk=filler.trunk))
            per.append({"fold": k, "macro_f1": curve, "seconds": time.perf_counter() - t1})
            log(f"{key}, fold {k}: {' '.join(f'{v:.3f}' for v in curve)} ({per[-1]['seconds']:.0f} s)")
            save_probas(out, ds.name, key, k, probas)
            res["recipes"][key] = {"changes": RECIPES[name], "backbone": backbone, "unfreeze": unfreeze,
                                   "folds": sorted(per, key=lambda f: f["fold"])}
            write_json(out.with_suffix(".json"), res)
        write_json(out.with_suffix(".json"), res)
        write_text(out.with_suffix(".md"), write_md(res))
    return res


def probas_path(out: Path, data: str, key: str, fold: int) -> Path:
    """Where a recipe's held-out probabilities after every epoch are kept (ignored ``cache/``; for ensembles of
    screened recipes, :func:`ensemble_curve`)."""
    slug = "".join(c if c.isalnum() else "-" for c in key)
    return ROOT / "cache" / "screen" / f"{out.name}-{data}-{slug}-fold{fold}.npz"


def save_probas(out: Path, data: str, key: str, fold: int, probas: list) -> None:
    path = probas_path(out, data, key, fold)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, y, _ = probas[0]
    np.savez(path, rows=rows, y=y, p=np.stack([p for _, _, p in probas]))


def ensemble_curve(out: Path, data: str, keys: list[str], fold: int) -> list[float]:
    """Held-out macro F1 after every epoch of the mean of the screened recipes' probabilities (one fold)."""
    from sklearn.metrics import f1_score

    got = [np.load(probas_path(out, data, k, fold)) for k in keys]
    for g in got[1:]:
        assert np.array_equal(g["rows"], got[0]["rows"]), "recipes scored different rows"
    p, y = np.mean([g["p"] for g in got], axis=0), got[0]["y"]
    return [float(f1_score(y, q.argmax(1), average="macro")) for q in p]


def write_md(res: dict) -> str:
    md = [f"# Fine-tuning levers screened on {res['data']} ({res['n_images']} paintings)", "",
          (f"Machine: {res['machine']}. Produced by `python benchmarks/screen_finetune.py`. EfficientNet-Lite0 "
           f"(ImageNet), --unfreeze 2, LP-FT, frozen BatchNorm statistics, a {res['epochs']}-epoch schedule; one "
           f"trunk cache of {res['views_cached']} augmented views per painting ({res['fill_seconds']:.0f} s to "
           "fill) shared by every row. Held-out macro F1 of the outer folds (stratified 5-fold, seed 0) after "
           "every epoch; epoch 0 is the LP-FT head before training, i.e. the frozen linear probe."), "",
          ("**A screen, not a result**: it reads the held-out rows of the folds it uses at every epoch, so "
           "'best epoch' is optimistic. It ranks levers; `bench_finetune.py` measures the chosen default with "
           "the epoch count chosen inside the training rows."), "",
          ]
    md += [f"- {n}" for n in res.get("notes", [])] + ([""] if res.get("notes") else [])
    md += ["| recipe | changes | folds | epoch 0 (probe) | best epoch | best | last epoch | s per fold |",
           "|---|---|---|---|---|---|---|---|"]
    for name, r in res["recipes"].items():
        c = np.array([f["macro_f1"] for f in r["folds"]])
        mean = c.mean(0)
        e = int(np.argmax(mean))
        ch = ", ".join(f"{k}={v}" for k, v in r["changes"].items()) or "(the recipe before: backbone_lr=0.1, no TTA)"
        folds = ",".join(str(f["fold"]) for f in r["folds"])
        md.append(f"| {name} | {ch} | {folds} | {mean[0]:.3f} | {e} | {mean[e]:.3f} | {mean[-1]:.3f} | "
                  f"{np.mean([f['seconds'] for f in r['folds']]):.0f} |")
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "impressionists")
    ap.add_argument("--folds", default="0,1")
    ap.add_argument("--recipes", default="all", help="comma-separated names of RECIPES, or all")
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--unfreeze", type=int, default=2, help="blocks trained (the trunk below them is cached)")
    ap.add_argument("--ensemble", default=None, help="'|'-separated screened recipe keys: print the held-out "
                    "macro F1 of their averaged probabilities per fold and epoch (no training)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--machine", default=f"{os.cpu_count()}-core {platform.machine()} CPU, no GPU")
    ap.add_argument("--out", type=Path, default=RESULTS / "finetune-screen")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    folds = [int(k) for k in args.folds.split(",")]
    if args.ensemble:
        for k in folds:
            curve = ensemble_curve(args.out, load_dataset(args.data).name, args.ensemble.split("|"), k)
            log(f"ensemble, fold {k}: {' '.join(f'{v:.3f}' for v in curve)}")
        return
    names = list(RECIPES) if args.recipes == "all" else args.recipes.split(",")
    screen(args.data, folds, names, args.views, args.epochs, args.out, args.machine, args.backbone, args.unfreeze)
    log(json.dumps({"wrote": str(args.out)}))


if __name__ == "__main__":
    main()
