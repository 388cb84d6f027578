"""``featx finetune`` end to end: a labelled folder -> a fine-tuned network and its run folder.

The run folder (``runs/ft-<dataset>-<backbone>-u<N>/`` or ``--out``) holds ``best.pt`` (best
validation macro F1) and ``last.pt`` (``--resume`` continues from it), ``history.csv`` and
``curves.png`` (rewritten after every epoch), and the test split's ``metrics.json``,
``report.txt``, ``confusion_matrix.png`` and ``misclassified.png``, written by the same code as
``featx fit``'s. A run is repeatable on a CPU: every random choice comes from ``--seed`` and the
epoch (order, views, dropout) or the image id (augmentation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...backbones.blocks import run_stages
from ...backbones.build import create_model
from ...backbones.registry import get_cfg
from ...backbones.weights_ref import WeightsRef
from ...data.dataset import ImageDataset
from ...data.discover import load_dataset
from ...data.splits import DEFAULT_RATIOS
from ...engine.embed import precision_name, resolve_device, resolve_precision
from ...errors import DataError, OptionError
from ...report.metrics import compute_metrics
from ...report.runs import new_run_dir
from ...stats import majority_accuracy
from ..fit import write_evaluation
from . import checkpoint
from .augment import EVAL_VIEW, FLIP_VIEW
from .average import WeightAverage
from .config import FinetuneCfg
from .history import draw_curves, write_history
from .probe import Probe, fit_probe
from .schedule import Schedule
from .select import Selection, candidates, merge_val, select_recipe
from .stopping import EarlyStopping
from .trunk import Network, Normalise, TrunkCache, view_batches
from .verdict import run_verdict


@dataclass
class FinetuneResult:
    """What a run wrote and reached."""

    out: Path
    history: list[dict]
    metrics: dict | None
    best_epoch: int
    stopped_early: bool
    seconds: float
    trunk_seconds: float = 0.0
    trainer: Trainer | None = field(default=None, repr=False)  # with the best weights loaded
    probe: Probe | None = field(default=None, repr=False)  # the frozen linear probe on the same rows
    selection: Selection | None = None  # the k-fold choice of the epoch count (and recipe under --search)

    @property
    def best(self) -> Path:
        return self.out / "best.pt"

    @property
    def last(self) -> Path:
        return self.out / "last.pt"


def default_name(dataset: ImageDataset, cfg: FinetuneCfg, backbones: Sequence[str] = ()) -> str:
    """``ft-<dataset>-<backbone>-u<N>`` (``-random`` for ``--weights none``; ``<a>+<b>`` for several backbones)."""
    random = "-random" if WeightsRef.parse(cfg.weights, get_cfg(cfg.backbone)).kind == "none" else ""
    return f"ft-{dataset.name}-{'+'.join(backbones or [cfg.backbone]).replace(':', '-')}{random}-u{cfg.unfreeze}"


class Trainer:
    """One fine-tuning run: the network, its optimiser and schedule, the splits and the cached trunk."""

    def __init__(self, cfg: FinetuneCfg, dataset: ImageDataset, *, device: str = "auto", workers: int | None = None,
                 progress: bool = True, echo: Callable[[str], None] = lambda s: None, share_trunk: bool = False,
                 trunk: TrunkCache | None = None):
        """``trunk`` shares another trainer's cached trunk (same backbone, unfreeze, augmentation and seed:
        the k-fold selection's folds). Without val rows (``--cv``: the final run on all training rows)
        every epoch is the run's latest best."""
        self.cfg, self.ds, self.echo, self.progress, self.workers = cfg, dataset, echo, progress, workers
        split = np.asarray(dataset.split)
        self.rows = {s: np.flatnonzero(split == s) for s in ("train", "val", "test")}
        for s in ("train",) if cfg.cv else ("train", "val"):
            if not len(self.rows[s]):
                raise DataError(f"--data {dataset.root}: no {s} images; fine-tuning needs train and val splits "
                                "(folders train/ val/ test/, a manifest split column, or the hash split)")
        self.classes = list(dataset.classes)
        self.bcfg = get_cfg(cfg.backbone)
        self.weights = WeightsRef.parse(cfg.weights, self.bcfg)
        self.identity = self.weights.identity
        self.device = resolve_device(device)
        self.amp = resolve_precision(cfg.precision, self.device)
        torch.manual_seed(cfg.seed)
        model = create_model(self.bcfg, self.weights)
        self.net = Network(model, cfg, len(self.classes), self.bcfg.name)
        channels_last = cfg.channels_last and self.device.type in ("cuda", "cpu")
        model.to(self.device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.normalise = Normalise(self.bcfg.data, self.device, channels_last)
        self.optimizer = self._optimizer()
        n_train = len(self.rows["train"])
        self.steps_per_epoch = n_train // cfg.batch_size + (n_train % cfg.batch_size > 1)
        self.schedule = Schedule(cfg.scheduler, self.steps_per_epoch, cfg.epochs, cfg.warmup)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        self.criterion = torch.nn.CrossEntropyLoss(weight=self._class_weights(), label_smoothing=cfg.label_smoothing)
        self.cached = cfg.cache_trunk and bool(self.net.frozen)
        self.aug = cfg.augment if cfg.augment.active else None
        self.views = cfg.views if self.aug is not None else 1
        key = "|".join(map(str, (self.bcfg.name, self.identity, cfg.unfreeze, self.bcfg.data, self.aug, cfg.seed,
                                 self.device, self.amp, dataset.root)))
        self.trunk = (trunk if trunk is not None else TrunkCache(key, keep=share_trunk)) if self.cached else None
        self.avg = WeightAverage(self.net.model, cfg.average, cfg.ema_decay, cfg.epochs) \
            if cfg.average != "none" else None
        self.epoch, self.step = 0, 0
        self.stopping = EarlyStopping(cfg.patience)
        self.history: list[dict] = []
        self.trunk_seconds = 0.0

    # ------------------------------------------------------------ set-up

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        head = list(self.net.head.parameters())
        seen = {id(p) for p in head}
        stages = [("head", head, cfg.lr)]
        # the trainable backbone stages from the top down: the neck and the top block at --lr x --backbone-lr,
        # each block below it --llrd times less (layer-wise learning-rate decay)
        depth = 0
        for stage in reversed(self.net.trainable[:-1]):
            params = [p for p in stage.parameters() if id(p) not in seen]
            seen.update(id(p) for p in params)
            if params:
                stages.append(("backbone", params, cfg.lr * cfg.backbone_lr * cfg.llrd ** depth))
            if stage is not self.net.blocks.neck:
                depth += 1
        groups = []
        for name, params, lr in stages:
            for decay in (True, False):
                ps = [p for p in params if (p.ndim > 1) == decay]
                if ps:
                    groups.append({"params": ps, "lr": lr, "base_lr": lr, "name": name,
                                   "weight_decay": cfg.weight_decay if decay else 0.0})
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups)
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
        return torch.optim.RMSprop(groups, momentum=cfg.momentum)

    def _class_weights(self) -> torch.Tensor | None:
        if self.cfg.class_weight != "balanced":
            return None
        y = self.ds.labels[self.rows["train"]]
        counts = np.bincount(y, minlength=len(self.classes)).astype(float)
        w = np.where(counts > 0, len(y) / (len(self.classes) * np.maximum(counts, 1)), 0.0)
        return torch.tensor(w, dtype=torch.float32, device=self.device)

    def _paths_ids(self, rows: np.ndarray) -> tuple[list[Path], list[str]]:
        return [self.ds.path(int(j)) for j in rows], [self.ds.ids[int(j)] for j in rows]

    def fill_trunk(self) -> None:
        """Compute the frozen trunk's output once: each training image's augmented views, every image's eval view
        (and under ``--tta`` its mirrored one: the probe embeds the training rows too)."""
        if self.trunk is None:
            return
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        jobs = [(self.rows["train"], v, self.aug) for v in range(self.views)] if self.aug is not None else []
        everything = np.concatenate([self.rows["val"], self.rows["test"], self.rows["train"]])
        jobs += [(everything, view, None) for view in ((EVAL_VIEW, FLIP_VIEW) if self.cfg.tta else (EVAL_VIEW,))]
        total = sum(len(r) for r, _, _ in jobs)
        with tqdm(total=total, unit="img", desc="trunk cache", disable=not self.progress, mininterval=1.0) as bar:
            self.net.train(False)
            for rows, view, aug in jobs:
                paths, ids = self._paths_ids(rows)
                self.trunk.fill(self.net, self.normalise, paths, ids, [view] * len(rows), self.bcfg.data, aug,
                                self.cfg.seed, batch_size=self.cfg.batch_size, workers=self.workers,
                                on_batch=bar.update)
        self.trunk_seconds += time.perf_counter() - t0
        if self.trunk.failed:
            self._drop_failed(self.trunk.failed)
        self.echo(f"trunk cache: {len(self.trunk.acts):,} activations ({self.trunk.nbytes() / 2**20:.0f} MiB) "
                  f"in {time.perf_counter() - t0:.1f} s")

    def _drop_failed(self, failed: dict[str, str]) -> None:
        for ident, reason in failed.items():
            self.echo(f"warning: {ident}: skipped ({reason})")
        bad = set(failed)
        self.rows = {s: np.array([j for j in r if self.ds.ids[int(j)] not in bad], dtype=int)
                     for s, r in self.rows.items()}

    # ------------------------------------------------------------ batches

    def _batches(self, rows: np.ndarray, views: np.ndarray, aug, *, size: int):
        """``(rows, logits-ready input)`` batches: cached activations or images through the frozen trunk."""
        if self.trunk is not None:
            for a in range(0, len(rows), size):
                r, v = rows[a:a + size], views[a:a + size]
                ids = [self.ds.ids[int(j)] for j in r]
                yield r, self.trunk.batch(ids, [int(x) for x in v]).to(self.device, non_blocking=True)
            return
        paths, ids = self._paths_ids(rows)
        for idx, x, failed in view_batches(paths, ids, [int(v) for v in views], self.bcfg.data, aug, self.cfg.seed,
                                           batch_size=size, workers=self.workers,
                                           pin_memory=self.device.type == "cuda"):
            for j, reason in failed:
                self.echo(f"warning: {ids[j]}: skipped ({reason})")
            if idx:
                yield rows[idx], self.net.trunk(self.normalise(x))

    def _autocast(self):
        if self.amp is None:
            return torch.autocast("cpu", enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp)

    # ------------------------------------------------------------ epochs

    def train_epoch(self, epoch: int) -> dict:
        """One pass over the training split; returns its loss, accuracy, macro F1 and speed."""
        from sklearn.metrics import f1_score
        from tqdm.auto import tqdm

        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, epoch])
        rows = rng.permutation(self.rows["train"])
        if self.aug is None:
            views = np.full(len(rows), EVAL_VIEW)
        elif self.trunk is not None:
            views = rng.integers(0, self.views, len(rows))
        else:
            views = np.full(len(rows), epoch)  # the full path draws a fresh view every epoch
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout, mixup pairs
        self.net.train(True)
        total, n, y_all, p_all = 0.0, 0, [], []
        t0 = time.perf_counter()
        bar = tqdm(total=len(rows), unit="img", desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not self.progress,
                   mininterval=0.5, leave=False)
        for r, a in self._batches(rows, views, self.aug, size=cfg.batch_size):
            if len(r) < 2:  # batch norm cannot train on one image
                continue
            y = torch.as_tensor(self.ds.labels[r], device=self.device)
            self.schedule.apply(self.optimizer, self.step)
            with self._autocast():
                if cfg.mixup > 0:  # mixup of the trunk's output (cached activations: manifold mixup)
                    lam = float(rng.beta(cfg.mixup, cfg.mixup))
                    perm = torch.randperm(len(r), device=a.device)
                    logits = self.net.top(lam * a + (1 - lam) * a[perm])
                    loss = lam * self.criterion(logits.float(), y) + (1 - lam) * self.criterion(logits.float(), y[perm])
                else:
                    logits = self.net.top(a)
                    loss = self.criterion(logits.float(), y)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            if self.avg is not None:
                self.avg.after_step()
            self.step += 1
            total += float(loss.detach()) * len(r)
            n += len(r)
            y_all.append(self.ds.labels[r])
            p_all.append(logits.argmax(1).cpu().numpy())
            bar.update(len(r))
            bar.set_postfix(loss=f"{total / n:.3f}", acc=f"{np.mean(np.concatenate(y_all) == np.concatenate(p_all)):.3f}")
        bar.close()
        seconds = time.perf_counter() - t0
        y, p = np.concatenate(y_all), np.concatenate(p_all)
        return {"train_loss": total / max(n, 1), "train_accuracy": float(np.mean(y == p)),
                "train_macro_f1": float(f1_score(y, p, average="macro", labels=range(len(self.classes)),
                                                 zero_division=0)),
                "seconds": seconds, "images_per_s": n / seconds if seconds else 0.0}

    @torch.no_grad()
    def predict(self, split: str, *, averaged: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, labels, probabilities)`` of a split (eval mode, no augmentation; the averaged weights when
        ``--average`` has begun and ``averaged``; with ``--tta`` the softmax of the mean of the image's and its
        mirror image's logits, as ``featx predict`` gives)."""
        if averaged and self.avg is not None and self.avg.ready:
            with self.avg.swapped():
                return self.predict(split, averaged=False)
        self.net.train(False)
        r, z = self._logits(self.rows[split], EVAL_VIEW)
        if self.cfg.tta and len(r):
            z = (z + self._logits(r, FLIP_VIEW)[1]) / 2
        return r, self.ds.labels[r], torch.softmax(torch.from_numpy(z), 1).numpy()

    @torch.no_grad()
    def _logits(self, rows: np.ndarray, view: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rows read, logits)`` of one un-augmented view of ``rows`` with the current weights."""
        out_rows, logits = [], []
        for r, a in self._batches(rows, np.full(len(rows), view), None, size=max(self.cfg.batch_size, 32)):
            with self._autocast():
                logits.append(self.net.top(a).float().cpu().numpy())
            out_rows.append(r)
        return (np.concatenate(out_rows) if out_rows else np.zeros(0, int),
                np.concatenate(logits) if logits else np.zeros((0, len(self.classes)), np.float32))

    @torch.no_grad()
    def embed(self, rows: np.ndarray, view: int = EVAL_VIEW) -> np.ndarray:
        """Pooled embeddings (the head's input; what ``featx extract`` stores at ``pre_logits``) of ``rows``,
        un-augmented (``view`` FLIP_VIEW: mirrored), with the current weights."""
        if self.trunk is not None:  # eval views of training images are not cached when training augments
            paths, ids = self._paths_ids(rows)
            self.trunk.fill(self.net, self.normalise, paths, ids, [view] * len(rows), self.bcfg.data, None,
                            self.cfg.seed, batch_size=self.cfg.batch_size, workers=self.workers)
        self.net.train(False)
        body = self.net.trainable[:-1]
        out = [run_stages(body, a).float().cpu().numpy()
               for _, a in self._batches(rows, np.full(len(rows), view), None, size=max(self.cfg.batch_size, 32))]
        return np.concatenate(out) if out else np.zeros((0, self.net.blocks.dim), np.float32)

    def evaluate(self, split: str) -> dict:
        from sklearn.metrics import f1_score

        if not len(self.rows[split]):
            return {f"{split}_loss": None, f"{split}_accuracy": None, f"{split}_macro_f1": None}
        _, y, p = self.predict(split)
        loss = float(self.criterion(torch.log(torch.as_tensor(p).clamp_min(1e-12)).to(self.device),
                                    torch.as_tensor(y, device=self.device)))
        pred = p.argmax(1)
        return {f"{split}_loss": loss, f"{split}_accuracy": float(np.mean(pred == y)),
                f"{split}_macro_f1": float(f1_score(y, pred, average="macro", labels=range(len(self.classes)),
                                                    zero_division=0))}

    def run_epoch(self) -> dict:
        """Train one epoch, validate, step the schedule and early stopping; the epoch's history row."""
        e = self.epoch
        row = {"epoch": e + 1, **self.train_epoch(e)}
        if self.avg is not None:
            self.avg.after_epoch(e)
        row.update(self.evaluate("val"))
        row["lr"], row["lr_backbone"] = self.lrs()
        if row["val_macro_f1"] is None:  # no val rows: the epoch count was chosen beforehand (--cv)
            row["lr_lowered"], row["best"] = False, True
            self.stopping.best_epoch = e
        else:
            row["lr_lowered"] = self.schedule.end_epoch(row["val_macro_f1"], e)
            row["best"] = self.stopping.improved(row["val_macro_f1"], e)
        self.epoch = e + 1
        self.history.append(row)
        return row

    def lrs(self) -> tuple[float, float]:
        by: dict[str, float] = {}
        for g in self.optimizer.param_groups:  # the top backbone stage's rate under --llrd
            by.setdefault(g["name"], g["lr"])
        head = by.get("head", 0.0)
        return head, by.get("backbone", 0.0)

    # ------------------------------------------------------------ checkpoints

    def payload(self, full: bool, extra: dict | None = None) -> dict:
        """``best.pt`` (``full=False``: the averaged weights under ``--average``) or ``last.pt`` (the raw
        weights, the average and everything ``--resume`` needs)."""
        state = self.net.model.state_dict()
        if not full and self.avg is not None and self.avg.ready:
            state = {**state, **self.avg.avg}
        d = {"backbone": self.bcfg.to_dict(), "weights": self.identity, "classes": self.classes,
             "head": self.net.head_spec, "config": self.cfg.to_dict(), "data": str(self.ds.root),
             "state_dict": state, "epoch": self.epoch, **self.stopping.summary(),
             "precision": precision_name(self.amp), **(extra or {})}
        if full:
            d.update({"step": self.step, "bad_epochs": self.stopping.bad, "history": self.history,
                      "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                      "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                      "average": self.avg.state_dict() if self.avg is not None else None})
        return d

    def restore(self, ck: dict) -> None:
        """Continue from ``last.pt``: weights, epoch, optimiser, schedule, early stopping and history."""
        self.net.model.load_state_dict(ck["state_dict"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.schedule.load_state_dict(ck["schedule"])
        if self.scaler is not None and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        if self.avg is not None and ck.get("average"):
            self.avg.load_state_dict(ck["average"])
        self.epoch, self.step = int(ck["epoch"]), int(ck["step"])
        self.stopping.resume(ck)
        self.history = [dict(r) for r in ck["history"]]


def _check_resume(ck: dict, cfg: FinetuneCfg, dataset: ImageDataset, path: Path) -> None:
    saved = dict(ck.get("requested_config") or ck["config"])
    now = cfg.to_dict()
    for key in now:
        if key != "epochs" and saved.get(key) != now[key]:
            raise OptionError(f"--resume: {path} was trained with {key}={saved.get(key)!r}, this command says "
                              f"{now[key]!r}; resume with the same options (only --epochs may grow)")
    if ck.get("data") != str(dataset.root):
        raise OptionError(f"--resume: {path} was trained on {ck.get('data')}, not {dataset.root}")


def finetune(data: str | Path, cfg: FinetuneCfg, *, out: str | Path | None = None, name: str | None = None,
             runs_dir: str | Path = "runs", resume: bool = False, overwrite: bool = False, device: str = "auto",
             workers: int | None = None, label_from_name: str | None = None, split_seed: int = 0,
             split_ratios: tuple[float, float, float] = DEFAULT_RATIOS, progress: bool = True,
             echo: Callable[[str], None] = lambda s: None, dataset: ImageDataset | None = None,
             share_trunk: bool = False, on_epoch: Callable[[int], None] | None = None,
             search: bool = False) -> FinetuneResult:
    """Fine-tune ``cfg.backbone`` on ``data`` and write the run folder; see ``featx finetune --help``.

    ``dataset`` replaces ``data`` (the benchmark's folds); ``share_trunk`` keeps the cached trunk for
    later runs in this process; ``on_epoch(k)`` is called after the k-th epoch is saved (tests);
    ``search`` compares the recipes of :data:`featx.learn.finetune.select.SEARCH_GRID` by the k-fold CV.
    """
    t0 = time.perf_counter()
    ds = dataset if dataset is not None else load_dataset(data, label_from_name=label_from_name,
                                                          split_seed=split_seed, split_ratios=split_ratios)
    if len(ds.classes) < 2:
        raise DataError(f"--data {ds.root}: {len(ds.classes)} class; fine-tuning needs at least two")
    ck = None
    if resume:
        run = Path(out) if out is not None else Path(runs_dir) / (name or default_name(ds, cfg))
        ck = checkpoint.load(run / "last.pt")
        _check_resume(ck, cfg, ds, run / "last.pt")
    if cfg.cv:  # the k-fold CV on the training rows decides; the final run trains on train + val
        ds = merge_val(ds)
    make = {"device": device, "workers": workers, "echo": echo}
    trainer = Trainer(cfg, ds, progress=progress, share_trunk=share_trunk, **make)
    if ck is None:  # the folder is made once the options are known to work
        run = new_run_dir(out, name or default_name(ds, cfg), runs_dir, overwrite=overwrite, echo=echo)
    n_train = sum(p.numel() for p in trainer.net.trainable_parameters())
    echo(f"{cfg.backbone}: training {cfg.unfreeze} of {len(trainer.net.blocks)} blocks + a new head "
         f"({n_train:,} parameters) on {len(trainer.rows['train'])} images"
         + (f" (train + val; {cfg.cv}-fold CV on them chooses the epoch count)" if cfg.cv else
            f", validating on {len(trainer.rows['val'])}")
         + f"; {'cached trunk' if trainer.cached else 'full forward/backward'} on "
         f"{trainer.device.type}, {precision_name(trainer.amp)}")
    trainer.fill_trunk()
    probe = fit_probe(trainer)  # before any training step: the frozen baseline and LP-FT's head
    echo(f"frozen linear probe (softmax on the pooled features): {'test' if len(probe.rows['test']) else 'val'} "
         f"accuracy {probe.accuracy('test' if len(probe.rows['test']) else 'val'):.3f}")
    selection = None
    if cfg.cv and ck is None:
        def make_trainer(c: FinetuneCfg, fold: ImageDataset) -> Trainer:
            return Trainer(c, fold, progress=False, trunk=trainer.trunk, **{**make, "echo": lambda s: None})

        recipes = candidates(cfg, search)
        echo(f"choosing the epoch count{' and the recipe' if search else ''} by {cfg.cv}-fold CV on the "
             f"{len(trainer.rows['train'])} training images ({len(recipes)} recipe(s) x {cfg.cv} folds x "
             f"{cfg.epochs} epochs)")
        selection = select_recipe(ds, trainer.rows["train"], recipes, cfg.cv, make_trainer, lp_ft, echo)
        for line in selection.lines():
            echo(line)
    elif ck is not None and ck.get("selection"):
        selection = Selection.from_dict(ck["selection"], FinetuneCfg.from_dict(ck["config"]))
    if selection is not None and selection.cfg != cfg:  # --search chose another recipe: its own trainer
        trainer = Trainer(selection.cfg, ds, progress=progress, trunk=trainer.trunk, **make)
    if trainer.cfg.lp_ft:
        probe.load_into(trainer)
    if ck is not None:
        trainer.restore(ck)
        echo(f"resuming {run} after epoch {trainer.epoch}")
    tcfg = trainer.cfg
    target = selection.epochs if selection is not None else tcfg.epochs
    extra = {"selection": selection.to_dict(), "requested_config": cfg.to_dict()} if selection is not None else {}
    stopped = False
    if target == 0 and ck is None:  # the k-fold CV preferred the network before training: the LP-FT head
        echo("the k-fold CV found no epoch of fine-tuning better than the frozen probe: best.pt is the pretrained "
             "network with the probe as its head")
        checkpoint.save(run / "best.pt", trainer.payload(full=False, extra=extra))
        checkpoint.save(run / "last.pt", trainer.payload(full=True, extra=extra))
    while trainer.epoch < target:
        if trainer.stopping.should_stop and selection is None:
            stopped = True
            break
        row = trainer.run_epoch()
        if row["best"]:
            checkpoint.save(run / "best.pt", trainer.payload(full=False, extra=extra))
        checkpoint.save(run / "last.pt", trainer.payload(full=True, extra=extra))
        write_history(run / "history.csv", trainer.history)
        draw_curves(run / "curves.png", trainer.history, title=f"{cfg.backbone} on {ds.name}, unfreeze {cfg.unfreeze}")
        echo(epoch_line(row, target))
        if on_epoch is not None:
            on_epoch(trainer.epoch)
    best_epoch = trainer.stopping.best_epoch
    if stopped:
        echo(f"early stop: no better validation macro F1 for {cfg.patience} epochs; best epoch {best_epoch + 1}")
    seconds = time.perf_counter() - t0
    metrics = test_report(trainer, run, seconds, selection)
    if metrics is not None:  # the verdict: the fine-tuned network against the frozen probe on the same test rows
        metrics = run_verdict(trainer, probe, run, metrics)
    return FinetuneResult(run, trainer.history, metrics, best_epoch, stopped, seconds, trainer.trunk_seconds, trainer,
                          probe, selection)


def lp_ft(trainer: Trainer) -> None:
    """Start ``trainer``'s linear head from its own training rows' frozen probe when its recipe says so."""
    if trainer.cfg.lp_ft:
        fit_probe(trainer).load_into(trainer)


def epoch_line(row: dict, epochs: int) -> str:
    star = " *" if row["best"] and row["val_macro_f1"] is not None else ""
    low = " (rate lowered)" if row.get("lr_lowered") else ""
    val = (f" | val loss {row['val_loss']:.3f} acc {row['val_accuracy']:.3f} F1 {row['val_macro_f1']:.3f}{star}"
           if row["val_macro_f1"] is not None else "")
    return (f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.3f} acc {row['train_accuracy']:.3f} "
            f"F1 {row['train_macro_f1']:.3f}{val} | lr {row['lr']:.1e}{low} | {row['seconds']:.1f} s, "
            f"{row['images_per_s']:.0f} img/s")


def test_report(trainer: Trainer, run: Path, seconds: float, selection: Selection | None = None) -> dict | None:
    """The best checkpoint on the test split (validation when there is none), in ``featx fit``'s format."""
    best = checkpoint.load(run / "best.pt")
    trainer.net.model.load_state_dict(best["state_dict"])  # the averaged weights under --average
    split = "test" if len(trainer.rows["test"]) else "val"
    if not len(trainer.rows[split]):
        return None
    t0 = time.perf_counter()
    rows, y, p = trainer.predict(split, averaged=False)
    predict_seconds = time.perf_counter() - t0
    pred = p.argmax(1)
    cfg, classes, best_epoch = trainer.cfg, trainer.classes, trainer.stopping.best_epoch
    label = f"{cfg.backbone} [fine-tuned, unfreeze {cfg.unfreeze}]"
    m = compute_metrics(y, pred, p, classes)
    notes = [] if split == "test" else ["no test split: scored on the validation split used for model selection"]
    val_acc = trainer.history[best_epoch]["val_accuracy"] if trainer.history and best_epoch >= 0 else None
    metrics = {"classifier": "finetune", "label": label, **cfg.to_dict(), "best_params": None,
               "evaluation": {"mode": split, "n_eval": len(y), "n_fit": len(trainer.rows["train"]),
                              "n_val": len(trainer.rows["val"]), "cv_folds": selection.folds if selection is not None else None},
               **m, "val_accuracy": val_acc,
               "cv_accuracy": selection.best["best_accuracy"] if selection is not None else None,
               "selection": selection.to_dict() if selection is not None else None, "majority_accuracy": majority_accuracy(trainer.ds.labels[trainer.rows["train"]], y),
               "fit_seconds": seconds, "predict_seconds": predict_seconds, "trunk_seconds": trainer.trunk_seconds,
               "best_epoch": best_epoch + 1, "epochs_run": trainer.epoch, "checkpoint": str((run / "best.pt").resolve()),
               "weights": trainer.identity, "data_root": str(trainer.ds.root), "notes": notes}
    write_evaluation(run, metrics, classes, y, pred, p, [trainer.ds.path(int(j)) for j in rows], label)
    return metrics
