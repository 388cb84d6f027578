"""Fit time and test accuracy of every `featx fit` classifier vs the seeds' dense softmax head.

    python benchmarks/bench_fit.py [--data-root ../shared/data] [--machine "2-core CPU"]

Extracts (or reuses) EfficientNet-Lite0 stores of Monet-Sisley and styles under
``cache/``, fits softmax / linearsvc / mlp / knn with featx defaults on the stored
train split, scores the test split once, and trains the seeds' head: one dense
softmax layer on the raw features, RMSprop (Keras defaults: lr 1e-3, rho 0.9,
eps 1e-7), batch 32, 80 epochs, test accuracy after the last epoch. Torch is
used here only. Writes ``benchmarks/results/fit.md``.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from featx.learn import classify
from featx.report import metrics
from featx.store.reader import load_features

ROOT = Path(__file__).resolve().parents[1]
CLASSIFIERS = ["softmax", "linearsvc", "mlp", "knn"]
BASELINES = "## featx defaults vs plain scikit-learn"  # bench_baselines.py's section of the same file


def seeds_head(X: np.ndarray, y: np.ndarray, split: np.ndarray, n_classes: int, *, epochs: int = 80,
               seed: int = 0) -> tuple[np.ndarray, float]:
    """Dense softmax layer trained the seeds' way; returns (test predictions, fit seconds)."""
    import torch

    torch.manual_seed(seed)
    tr, te = split == "train", split == "test"
    Xtr, ytr = torch.from_numpy(X[tr]), torch.from_numpy(y[tr])
    layer = torch.nn.Linear(X.shape[1], n_classes)
    opt = torch.optim.RMSprop(layer.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(len(ytr), generator=gen).split(32):
            opt.zero_grad()
            loss_fn(layer(Xtr[idx]), ytr[idx]).backward()
            opt.step()
    fit_s = time.perf_counter() - t0
    with torch.no_grad():
        pred = layer(torch.from_numpy(X[te])).argmax(1).numpy()
    return pred, fit_s


def store_for(data: Path) -> Path:
    from featx.extraction.options import ExtractOptions
    from featx.extraction.run import extract

    return extract(ExtractOptions("efficientnet_lite0", data, progress=False)).path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--machine", default=f"{platform.processor() or platform.machine()} CPU")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fit.md")
    args = ap.parse_args()

    lines = [
        "# `featx fit` classifiers vs the seeds' dense head",
        "",
        f"Machine: {args.machine}. EfficientNet-Lite0 (ImageNet weights) pre-logits features, 1280-d, "
        "featx default settings (no `--search`), fit on the stored train split, one look at the test split. "
        "Accuracy +- binomial standard error. Seeds' head: one dense softmax layer on raw features, "
        "RMSprop lr 1e-3, batch 32, 80 epochs (torch). Produced by `python benchmarks/bench_fit.py`.",
        "",
    ]
    for name in ("monet-sisley", "styles"):
        fs = load_features(store_for(args.data_root / name))
        n_test = int((fs.split == "test").sum())
        counts = np.bincount(fs.labels, minlength=len(fs.classes))
        lines += [f"## {name}: {len(fs)} images, {len(fs.classes)} classes (sizes {counts.tolist()}), "
                  f"train/val/test {int((fs.split == 'train').sum())}/{int((fs.split == 'val').sum())}/{n_test}",
                  "", "| classifier | test accuracy | macro F1 | fit s |", "|---|---|---|---|"]
        for clf in CLASSIFIERS:
            r = classify.fit_evaluate(fs.features, fs.labels, fs.split, fs.classes, clf)
            m = metrics.compute_metrics(r.y_true, r.y_pred, r.proba, fs.classes)
            lines.append(f"| {clf} | {m['accuracy_text']} | {m['macro_f1']:.3f} | {r.fit_seconds:.2f} |")
            print(name, clf, m["accuracy_text"], f"{r.fit_seconds:.2f}s", flush=True)
        pred, fit_s = seeds_head(fs.features, fs.labels, fs.split, len(fs.classes))
        y_test = fs.labels[fs.split == "test"]
        m = metrics.compute_metrics(y_test, pred, np.eye(len(fs.classes))[pred], fs.classes)
        lines.append(f"| seeds' head (RMSprop, 80 epochs) | {m['accuracy_text']} | {m['macro_f1']:.3f} | {fit_s:.2f} |")
        print(name, "seeds head", m["accuracy_text"], f"{fit_s:.2f}s", flush=True)
        lines.append("")
    lines += ["Notes: fit seconds are wall-clock on a machine shared with other jobs, so treat them as rough; "
              "the seeds' head is fit on raw features for a fixed 80 epochs with no model selection. "
              "Differences under about two standard errors are not significant at these test sizes.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # keep the section benchmarks/bench_baselines.py writes after this one
    old = args.out.read_text() if args.out.exists() else ""
    kept = old[old.index(BASELINES):] if BASELINES in old else ""
    args.out.write_text("\n".join(lines) + ("\n" + kept if kept else ""))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
