"""``featx finetune --seeds K``: K fine-tuning runs with seeds s, s+1, ..., s+K-1 (every other option the same)
and the ensemble of their best checkpoints, which averages the members' probabilities; ``--backbone A,B``
trains K members of each backbone.

The run folder (``runs/ft-<dataset>-<backbone>-u<N>-x<K>/`` or ``--out``) holds one complete run folder per
member (``seed-<s>/``, ``<backbone>-seed-<s>/`` with several backbones: ``best.pt``, its history, test report
and verdict), ``ensemble.json`` (the members' paths, backbones and sha256:
:func:`featx.backbones.weights_ref.read_ensemble`), and the ensemble's own ``metrics.json``, ``report.txt``,
``verdict.md``, ``confusion_matrix.png`` and ``misclassified.png`` on the same test rows, with the verdict
against the frozen probes of the same backbones (the mean of their probabilities). ``featx predict`` takes
the folder or the manifest; ``featx extract --weights`` too when the members share one backbone.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...backbones.registry import get_cfg
from ...backbones.weights_ref import (
    DEFAULT_NAMES,
    ENSEMBLE_FILE,
    WeightsRef,
    ensemble_manifest_dict,
)
from ...data.dataset import ImageDataset
from ...data.discover import load_dataset
from ...data.splits import DEFAULT_RATIOS
from ...errors import OptionError
from ...files import write_json
from ...report.metrics import compute_metrics
from ...report.runs import new_run_dir
from ...stats import majority_accuracy
from ..fit import write_evaluation
from .config import FinetuneCfg
from .probe import Probe
from .train import FinetuneResult, default_name, finetune
from .verdict import compare, write_verdict

MAX_SEEDS = 20


@dataclass
class EnsembleResult:
    """What ``featx finetune --seeds K`` wrote: the members' runs and the ensemble's metrics (with its verdict)."""

    out: Path
    members: list[FinetuneResult]
    metrics: dict | None  # None without test or validation rows
    seconds: float
    seeds: list[int] = field(default_factory=list)  # per member
    backbones: list[str] = field(default_factory=list)  # per member

    @property
    def manifest(self) -> Path:
        return self.out / ENSEMBLE_FILE

    @property
    def best(self) -> Path:  # what `featx predict` / `extract --weights` take, as FinetuneResult.best
        return self.manifest


def check_seeds(seeds: int) -> None:
    if not 1 <= seeds <= MAX_SEEDS:
        raise OptionError(f"--seeds {seeds}: the number of networks to train, 1 (no ensemble) to {MAX_SEEDS}")


def member_seeds(cfg: FinetuneCfg, seeds: int) -> list[int]:
    """``--seed s --seeds K``: s, s+1, ..., s+K-1."""
    check_seeds(seeds)
    return [cfg.seed + i for i in range(seeds)]


def check_backbones(cfg: FinetuneCfg, backbones: Sequence[str]) -> list[str]:
    """``--backbone A,B``: each a known backbone (checked before minutes of training), each once; several
    backbones start from their own pretrained weights (``--weights imagenet`` or ``none``)."""
    names = list(backbones) or [cfg.backbone]
    if len(set(names)) < len(names):
        raise OptionError(f"--backbone {','.join(names)}: name each backbone once (--seeds K trains K networks "
                          "of each)")
    for b in names:
        get_cfg(b)  # an unknown name is one error line now, not after the first member
    if len(names) > 1 and cfg.weights not in (*DEFAULT_NAMES, "none"):  # each backbone's own pretrained weights
        raise OptionError(f"--weights {cfg.weights}: one file cannot start several backbones ({', '.join(names)}); "
                          "use imagenet or none")
    return names


def member_folder(backbone: str, seed: int, several: bool) -> str:
    """``seed-<s>``, or ``<backbone>-seed-<s>`` in an ensemble of several backbones."""
    return f"{backbone.replace(':', '-')}-seed-{seed}" if several else f"seed-{seed}"


def finetune_ensemble(data: str | Path | None, cfg: FinetuneCfg, seeds: int = 1, *, backbones: Sequence[str] = (),
                      out: str | Path | None = None,
                      name: str | None = None, runs_dir: str | Path = "runs", resume: bool = False,
                      overwrite: bool = False, device: str = "auto", workers: int | None = None,
                      label_from_name: str | None = None, split_seed: int = 0,
                      split_ratios: tuple[float, float, float] = DEFAULT_RATIOS, progress: bool = True,
                      echo: Callable[[str], None] = lambda s: None, dataset: ImageDataset | None = None,
                      **options) -> EnsembleResult:
    """Train ``seeds`` members of each of ``backbones`` (default ``cfg.backbone``;
    :func:`featx.learn.finetune.train.finetune` with seeds ``cfg.seed + i``) into ``<run>/seed-<s>/`` (or
    ``<run>/<backbone>-seed-<s>/``), then write ``ensemble.json`` and the ensemble's test report and verdict.

    ``resume`` continues each member from its ``last.pt`` (members not started yet start afresh); other
    keywords (``options``, e.g. ``search``) go to every member's ``finetune``.
    """
    t0 = time.perf_counter()
    names = check_backbones(cfg, backbones)
    several = len(names) > 1
    plan = [(b, s) for b in names for s in member_seeds(cfg, seeds)]
    ds = dataset if dataset is not None else load_dataset(data, label_from_name=label_from_name,
                                                          split_seed=split_seed, split_ratios=split_ratios)
    default = f"{default_name(ds, cfg, names if several else ())}-x{len(plan)}"
    if resume:
        run = Path(out) if out is not None else Path(runs_dir) / (name or default)
        if not run.is_dir():
            raise OptionError(f"--resume: {run} does not exist; nothing to resume (run without --resume)")
    else:
        run = new_run_dir(out, name or default, runs_dir, overwrite=overwrite, echo=echo)
    members: list[FinetuneResult] = []
    probas, rows, y, split, probes = [], None, None, None, {}  # probes: each backbone's frozen probe
    for i, (b, s) in enumerate(plan):
        member_out = run / member_folder(b, s, several)
        echo(f"ensemble member {i + 1}/{len(plan)}: {b + ', ' if several else ''}seed {s} -> {member_out}")
        res = finetune(None, dataclasses.replace(cfg, backbone=b, seed=s), out=member_out,
                       resume=resume and (member_out / "last.pt").is_file(), overwrite=True, device=device,
                       workers=workers, progress=progress, echo=echo, dataset=ds, **options)
        if res.metrics is None:  # nothing to score on (no test or validation rows)
            res.trainer = None
            members.append(res)
            continue
        split = res.metrics["evaluation"]["mode"]
        r, yy, p = member_predictions(res, split)
        if rows is None:
            rows, y = r, yy
        elif not np.array_equal(r, rows):
            keep = np.isin(rows, r)  # an image one member could not read: score the rows every member read
            rows, y, probas = rows[keep], y[keep], [q[keep] for q in probas]
            p = p[np.isin(r, rows)]
        probes.setdefault(b, res.probe)  # the same for every seed of a backbone
        probas.append(p)
        res.trainer = None  # free the network and its trunk cache before the next member
        members.append(res)
    seed_list, backbone_list = [s for _, s in plan], [b for b, _ in plan]
    if not probas:
        write_manifest(run, cfg, ds, members, seed_list, backbone_list)
        return EnsembleResult(run, members, None, time.perf_counter() - t0, seed_list, backbone_list)
    proba = np.mean(probas, axis=0)
    metrics = _write_ensemble(run, cfg, ds, members, seed_list, backbone_list, rows, y, proba, split,
                              time.perf_counter() - t0)
    baseline = [probe_predictions(q, split, rows) for q in probes.values()]
    if all(q is not None for q in baseline):  # frozen features of the same backbones, averaged alike
        what = "frozen linear probe" if len(baseline) == 1 else f"frozen linear probes of the {len(baseline)} backbones"
        v = compare(y, proba, np.mean(baseline, axis=0), finetuned=f"fine-tuned ensemble of {len(plan)}",
                    probe=what, split=split, seed=cfg.seed, note=metrics["notes"][0] if metrics["notes"] else None)
        metrics = write_verdict(run, metrics, v, title=metrics["label"])
    else:
        write_json(run / "metrics.json", metrics)
    return EnsembleResult(run, members, metrics, time.perf_counter() - t0, seed_list, backbone_list)


def member_predictions(res: FinetuneResult, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, labels, probabilities)`` of a finished member's best checkpoint on ``split`` (its trainer holds the
    best weights once ``finetune`` returns)."""
    rows, y, p = res.trainer.predict(split, averaged=False)  # as test_report: best.pt's weights are loaded
    return np.asarray(rows), np.asarray(y), np.asarray(p)


def probe_predictions(probe: Probe | None, split: str, rows: np.ndarray) -> np.ndarray | None:
    """The frozen probe's probabilities of ``rows`` (the probe a member's run fitted), or None without one."""
    if probe is None:
        return None
    order = {int(r): i for i, r in enumerate(np.asarray(probe.rows[split]))}
    return probe.proba(split)[[order[int(r)] for r in rows]]


def write_manifest(run: Path, cfg: FinetuneCfg, ds: ImageDataset, members: list[FinetuneResult],
                   seeds: list[int], backbones: list[str]) -> tuple[Path, str]:
    """``ensemble.json`` (members' paths relative to ``run``, with their backbone and sha256); its path and
    weights identity."""
    manifest = run / ENSEMBLE_FILE
    write_json(manifest, ensemble_manifest_dict(cfg.backbone, ds.classes, [(m.best, s) for m, s in zip(members, seeds)],
                                                run, backbones))
    return manifest, WeightsRef.ensemble(manifest).identity  # reads the manifest back: every member checked


def _write_ensemble(run: Path, cfg: FinetuneCfg, ds: ImageDataset, members: list[FinetuneResult], seeds: list[int],
                    backbones: list[str], rows: np.ndarray, y: np.ndarray, proba: np.ndarray, split: str,
                    seconds: float) -> dict:
    """``ensemble.json``, then the ensemble's report files; returns its metrics (``metrics.json`` not yet written)."""
    classes = list(ds.classes)
    manifest, identity = write_manifest(run, cfg, ds, members, seeds, backbones)
    pred = proba.argmax(1)
    names = list(dict.fromkeys(backbones))
    label = f"{'+'.join(names)} [fine-tuned ensemble of {len(seeds)}, unfreeze {cfg.unfreeze}]"
    m = compute_metrics(y, pred, proba, classes)
    first = members[0].metrics
    notes = list(first.get("notes") or [])
    train_labels = ds.labels[np.asarray(ds.split) == "train"]
    metrics = {"classifier": "finetune-ensemble", "label": label, **cfg.to_dict(), "backbone": "+".join(names),
               "backbones": backbones, "seeds": seeds,
               "combine": "mean of the members' probabilities", "best_params": None,
               "evaluation": {**first["evaluation"], "n_eval": len(y)}, **m,
               "members": [{"backbone": b, "seed": s, "checkpoint": str(r.best.resolve()),
                            "accuracy": r.metrics["accuracy"], "macro_f1": r.metrics["macro_f1"],
                            "best_epoch": r.metrics.get("best_epoch")} for b, s, r in zip(backbones, seeds, members)],
               "val_accuracy": None, "cv_accuracy": None, "majority_accuracy": majority_accuracy(train_labels, y),
               "fit_seconds": seconds, "checkpoint": str(manifest.resolve()), "weights": identity,
               "data_root": str(ds.root), "notes": notes}
    write_evaluation(run, metrics, classes, y, pred, proba, [ds.path(int(j)) for j in rows], label,
                     write_metrics=False)
    return metrics
