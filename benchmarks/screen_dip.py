"""Why the default recipe's held-out macro F1 falls after the first epoch, and whether cheap changes help.

    python benchmarks/screen_dip.py --data ../shared/data/impressionists --folds 1,0,2 \
        --variants "head=0.1;head=0.3;optimizer=sgd,lr=0.01;floor=0.5;floor=uniform"
    python benchmarks/screen_dip.py --data ../shared/data/styles --folds 0,1 --logit-adjust 0,0.25,0.5,0.75,1

A diagnostic beside ``screen_finetune.py`` (the same outer folds, trunk cache of 4 views and 12-epoch
default recipe; held-out macro F1 after every epoch, epoch 0 = the LP-FT head = the frozen probe; as
optimistic as that screen). Each variant changes one thing that is not a ``featx finetune`` option:

* ``head=M``: the head's learning rate times M, the backbone's unchanged (is the head's step the cause?);
* ``optimizer=sgd,lr=X`` (any ``FinetuneCfg`` field): a plain recipe change;
* ``floor=Q``: the probe that starts the head standardises its features with every scale raised to the
  Q-quantile of the scales (``uniform``: one scale, the median, for every feature), so the head folded from it
  has no large weights on near-constant features (is the backbone's sensitivity through them the cause?);
* ``--logit-adjust T,..``: the default recipe once, its held-out probabilities re-scored after subtracting
  ``T x log(training prior)`` from their logs (post-hoc logit adjustment for macro F1 on imbalanced sets).

Prints one line per variant and fold, and the mean curve's last and best epoch; results are recorded by hand
in ``benchmarks/results/finetune-screen-dip.md`` with the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
from bench_finetune import outer_fold  # the same outer folds
from screen_finetune import shared_trunk, train_curve
from sklearn.preprocessing import StandardScaler

import featx.learn.finetune.probe as probe_mod
from featx.data.discover import load_dataset
from featx.learn.finetune.config import FinetuneCfg
from featx.learn.finetune.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
FLOOR: dict = {"q": None}  # the running variant's scale floor (None: featx's own probe)


class FlooredScaler(StandardScaler):
    """StandardScaler whose scales are raised to a quantile of themselves (``uniform``: all set to the median)."""

    def fit(self, X, y=None, sample_weight=None):
        super().fit(X, y)
        q = FLOOR["q"]
        if q == "uniform":
            self.scale_ = np.full_like(self.scale_, np.median(self.scale_))
        elif q is not None:
            self.scale_ = np.maximum(self.scale_, np.quantile(self.scale_, q))
        return self


_make = probe_mod.make_classifier


def _floored_classifier(*args, **kw):
    model = _make(*args, **kw)
    return model.set_params(standardize=FlooredScaler()) if FLOOR["q"] is not None else model


probe_mod.make_classifier = _floored_classifier  # fit_probe builds its classifier through this name


def parse_variant(text: str) -> tuple[dict, float, object]:
    kv = dict(x.split("=") for x in text.split(",") if x)
    head = float(kv.pop("head", 1))
    floor = kv.pop("floor", None)
    floor = floor if floor in (None, "uniform") else float(floor)
    cfg = {k: (v if k in ("optimizer", "scheduler", "average") else float(v)) for k, v in kv.items()}
    return cfg, head, floor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "impressionists")
    ap.add_argument("--folds", default="1,0,2")
    ap.add_argument("--variants", default="", help="';'-separated variants, e.g. head=0.1;floor=0.5")
    ap.add_argument("--logit-adjust", default="", help="comma-separated T: re-score the default recipe")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch
    from sklearn.metrics import f1_score

    torch.set_num_threads(args.threads)
    ds = load_dataset(args.data)
    base = FinetuneCfg("efficientnet_lite0", unfreeze=2, cv=0, patience=0, epochs=12, class_weight=None)
    t0 = time.perf_counter()
    filler = shared_trunk(ds, base, 4)
    print(f"trunk filled in {time.perf_counter() - t0:.0f} s", flush=True)
    folds = [int(k) for k in args.folds.split(",")]
    for text in [v for v in args.variants.split(";") if v] or (["default"] if args.logit_adjust else []):
        cfg, head, FLOOR["q"] = parse_variant("" if text == "default" else text)
        cfg = dataclasses.replace(base, **cfg)
        curves = []
        for k in folds:
            t1 = time.perf_counter()
            t = Trainer(cfg, outer_fold(ds, 5, k, "val"), progress=False, trunk=filler.trunk)
            for g in t.optimizer.param_groups:  # head=M: the head's rate only
                if g["name"] == "head":
                    g["base_lr"] *= head
                    g["lr"] = g["base_lr"]
            curve, probas = train_curve(t)  # LP-FT through fit_probe, so with the floored scaler
            curves.append(curve)
            print(f"{text} fold {k}: {' '.join(f'{c:.3f}' for c in curve)} ({time.perf_counter() - t1:.0f} s)",
                  flush=True)
            if args.logit_adjust:
                y = probas[0][1]
                prior = np.bincount(ds.labels[t.rows["train"]], minlength=len(t.classes)) / len(t.rows["train"])
                for tau in (float(v) for v in args.logit_adjust.split(",")):
                    f = [f1_score(y, (np.log(p + 1e-12) - tau * np.log(prior)).argmax(1), average="macro")
                         for _, _, p in probas]
                    print(f"  logit adjustment {tau}: {' '.join(f'{v:.3f}' for v in f)}", flush=True)
        m = np.mean(curves, axis=0)
        print(f"== {text}: last epoch {m[-1]:.3f}, best {m.max():.3f} at epoch {int(m.argmax())}", flush=True)


if __name__ == "__main__":
    main()
