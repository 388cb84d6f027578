"""Time every transferability score and projection of ``featx analyze``: 1,280-d synthetic features,
and wide features (VGG16 block5_pool flattened, 25,088 dims) as a real store and a synthetic one.

Part ``narrow``: n = 1k, 10k, 100k rows of dim 1280 (10 Gaussian classes, 1000 source logits). Scores
run as ``featx analyze --transferability`` runs them (kNN queries and the linear probe capped at
``max_rows`` = 20k rows, silhouette at 5k). Projections: PCA on all rows; t-SNE and UMAP after
PCA to 50 dims, on all rows up to 10k and on a stratified sub-sample at 100k (running them on
all 100k rows would take far more than a few minutes on a 2-core machine, so it is skipped).

Part ``wide``: ``featx analyze STORE --transferability`` as a subprocess (wall time and peak RSS of
that process, its own VmHWM) on (1) the VGG16 block5_pool store of ../shared/data/monet-sisley
(random weights, with logits; extracted first when missing, 480 train rows x 25,088) and (2) a
synthetic store of 20,000 x 25,088 (10 classes, 1000 logits; 2 GB of float32, written to a temporary
folder and removed afterwards).

    python benchmarks/bench_analyze.py [--part all|narrow|wide] [--sizes 1000 10000 100000]

Writes benchmarks/results/analyze.md (a part run alone keeps the other part's section as it was).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from featx.analysis import project, scoring, transfer

DIM, CLASSES, SOURCE = 1280, 10, 1000
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "analyze.md"
WIDE_MARK = "<!-- wide features: python benchmarks/bench_analyze.py --part wide -->"
MONET = Path(os.environ.get("FEATX_SHARED_DATA", ROOT.parent / "shared" / "data")) / "monet-sisley"
WIDE_DIM, WIDE_ROWS = 25088, 20000


def synthetic(n: int, seed: int = 0, dim: int = DIM):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    F = np.empty((n, dim), dtype=np.float32)
    centres = rng.normal(size=(CLASSES, dim)) * 0.15
    for s in range(0, n, 2000):  # in blocks, so the 20k x 25k case never holds a float64 copy
        block = centres[y[s:s + 2000]] + rng.normal(size=(len(y[s:s + 2000]), dim))
        F[s:s + 2000] = np.maximum(block, 0)  # post-ReLU-like, as pooled CNN features
    logits = rng.normal(size=(n, SOURCE)).astype(np.float32)
    logits[np.arange(n), 7 * y + rng.integers(0, 3, n)] += 3.0
    return F, y, logits


def machine() -> str:
    def first(path: str, key: str) -> str | None:
        p = Path(path)
        lines = p.read_text().splitlines() if p.exists() else []
        return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), None)

    cpu = first("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()
    mem = int((first("/proc/meminfo", "MemTotal") or "0 kB").split()[0]) / 2**20
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.machine()} (shared with another engineer's "
            f"jobs while measured: figures are noisy), Python {platform.python_version()}, NumPy {np.__version__}")


CHILD = """
import atexit, os, sys

def _peak():  # VmHWM: this process's own peak RSS (ru_maxrss would include the forking parent's pages)
    with open("/proc/self/status") as f:
        kib = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(os.environ["FEATX_BENCH_PEAK"], "w") as out:
        out.write(kib)

atexit.register(_peak)
from featx.cli import main
sys.argv = ["featx", *sys.argv[1:]]
main()
"""


def run_measured(featx_args: list[str]) -> tuple[int, float, float, str]:
    """Run ``featx ARGS`` in a fresh process: exit status, wall seconds, peak RSS (GiB) of that
    process alone (its VmHWM, read at exit), and the tail of its stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        env = {**os.environ, "FEATX_BENCH_PEAK": str(peak_file),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CHILD, *featx_args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=env)
        wall = time.perf_counter() - t
        peak = int(peak_file.read_text()) / 2**20 if peak_file.exists() else float("nan")
    return done.returncode, wall, peak, done.stderr.decode(errors="replace")[-3000:]


def timed(fn, *args, **kw) -> float:
    t = time.perf_counter()
    fn(*args, **kw)
    return time.perf_counter() - t


PROJECTION_PLAN = {  # method -> row cap per n (None: all rows); absent n -> skipped
    "pca": {1000: None, 10000: None, 100000: None},
    "tsne": {1000: None, 10000: None, 100000: 5000},
    "umap": {1000: None, 10000: None, 100000: 10000},
}
THREE_D_UP_TO = {"pca": 100000, "tsne": 1000, "umap": 1000}  # larger n: 3-D not timed (about 1.5x the 2-D)
SKIPPED = {("tsne", "all 100k rows"): "Barnes-Hut t-SNE on 100k rows: tens of minutes on 2 cores",
           ("umap", "all 100k rows"): "UMAP on 100k rows: well over a few minutes on 2 cores",
           ("t-SNE / UMAP 3-D", "10k and 100k rows"): "not timed to keep the run short (t-SNE 3-D took "
                                                      "about 2x its 2-D time at 1k)"}


def narrow(args) -> list[str]:
    """The 1,280-d section: every score (in-process, as compute_scores runs them) and projection."""
    rows: dict[str, dict[int, str]] = {}
    notes: dict[int, list[str]] = {}
    for n in args.sizes:
        F, y, logits = synthetic(n)
        print(f"n={n}: scores", flush=True)
        t = time.perf_counter()
        _, note, sec = scoring.compute_scores(F, y, logits, max_rows=args.max_rows)
        total = time.perf_counter() - t
        notes[n] = note
        for key, s in sec.items():
            rows.setdefault(f"score: {key}", {})[n] = f"{s:.2f}"
        rows.setdefault("scores: all (incl. nce_cv, task_overlap_u_cv)", {})[n] = f"{total:.1f}"
        for method, plan in PROJECTION_PLAN.items():
            if n not in plan:
                continue
            cap = plan[n]
            for dim in (2, 3) if n <= THREE_D_UP_TO[method] else (2,):
                label = f"{method} {dim}-D" + ("" if cap is None or cap >= n else f" (sub-sample {cap // 1000}k)")
                print(f"n={n}: {label}", flush=True)
                rows.setdefault(f"projection: {method} {dim}-D", {})[n] = (
                    f"{timed(project.project, F, y, method, dim, max_rows=cap):.1f}"
                    + ("" if cap is None or cap >= n else f" on {cap // 1000}k"))
        if n >= 100000:
            for method in ("tsne", "umap"):
                rows.setdefault(f"projection: {method} 2-D", {})[n] += " (all rows: skipped)"
        print(f"n={n}: pca variance + separability", flush=True)
        rows.setdefault("pca: explained variance (100 PCs)", {})[n] = f"{timed(project.explained_variance, F, 100):.1f}"
        rows.setdefault("pca: linear separability (7 k values, 5-fold)", {})[n] = (
            f"{timed(project.linear_separability, F, y, max_rows=args.max_rows):.1f}"
            + (f" on {args.max_rows // 1000}k" if n > args.max_rows else ""))
        print(f"n={n}: overlap + outliers", flush=True)
        rows.setdefault("neighbourhood overlap (k=10)", {})[n] = (
            f"{timed(project.neighbourhood_overlap, F, y, max_queries=args.max_rows):.1f}"
            + (f" ({args.max_rows // 1000}k queries)" if n > args.max_rows else ""))
        rows.setdefault("outliers (per class kNN)", {})[n] = f"{timed(project.outliers, F, y):.1f}"
    sizes = args.sizes
    md = [
        "## 1,280-d synthetic features (`--part narrow`)",
        "",
        f"Synthetic features: n rows x {DIM} dims, {CLASSES} classes, {SOURCE} source logits; seconds of wall time. "
        f"Machine: {machine()}.",
        "",
        "| step | " + " | ".join(f"n={n:,}" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for step, vals in rows.items():
        md.append(f"| {step} | " + " | ".join(vals.get(n, "-") for n in sizes) + " |")
    md += ["", "### How 100k rows stay feasible", "",
           "- LogME, H-score, shrinkage H-score and Fisher use the Gram matrix of the smaller side (d x d here, "
           "n x n when n < d), built from float64 blocks of F: one n d min(n, d) product, no SVD of n x d.",
           "- GBC fits a 64-component randomized PCA.",
           f"- kNN accuracy and the neighbourhood overlap query {args.max_rows:,} random rows against all rows "
           "(exact, chunked cosine); the linear probe and the separability check run on a stratified "
           f"{args.max_rows:,}-row sub-sample; silhouette on 5,000 rows.",
           "- PCA views project every row; t-SNE and UMAP run after PCA to 50 dims, on a stratified sub-sample "
           "at 100k (the plot states it).",
           "", "Skipped (would take far more than a few minutes on this 2-core machine):", ""]
    md += [f"- {m} on {what}: {why}" for (m, what), why in SKIPPED.items()]
    md += ["", "UMAP's first call includes numba compilation (the 1k 2-D figure).", "", "Sub-sampling notes:", ""]
    for n, note in notes.items():
        if note:
            md.append(f"- n={n:,}: " + "; ".join(note))
    return md


def vgg_store(cache: Path) -> Path:
    """The VGG16 block5_pool store of the Monet/Sisley paintings (random weights, logits), extracted once."""
    store = cache / "monet-sisley--vgg16-random--block5_pool-flatten.h5"
    if not store.exists():
        print(f"extracting {store} (about 2 minutes on 2 cores)", flush=True)
        code, _, _, err = run_measured(["extract", "-b", "vgg16", "--weights", "none", "--layer", "block5_pool",
                                        "--pool", "flatten", "--with-logits", "--data", str(MONET), "--out",
                                        str(store)])
        if code != 0:
            raise SystemExit(f"extraction failed ({code}): {err}")
    return store


def synthetic_store(path: Path) -> Path:
    from featx.config import DataCfg, ExtractCfg
    from featx.store.writer import write_arrays

    F, y, logits = synthetic(WIDE_ROWS, dim=WIDE_DIM)
    cfg = ExtractCfg(backbone="synthetic", arch="syn", source="bench", weights="none", layer="block5_pool",
                     module="x", pool="flatten", data=DataCfg(), with_logits=True)
    return write_arrays(path, cfg, features=F, labels=y, ids=[f"c{k}/{i:06d}.png" for i, k in enumerate(y)],
                        split=["train"] * len(y), classes=[f"c{k}" for k in range(CLASSES)], data_root=path.parent,
                        logits=logits)


def wide(args) -> list[str]:
    """The 25,088-d section: `featx analyze --transferability` as a subprocess, wall time and peak RSS."""
    cache = Path(os.environ.get("FEATX_CACHE", ROOT / "cache"))
    cache.mkdir(parents=True, exist_ok=True)
    cases = [("VGG16 block5_pool (random weights), monet-sisley, train split", vgg_store(cache), args.repeat)]
    tmp = tempfile.TemporaryDirectory(prefix="featx-bench-")
    print(f"writing the {WIDE_ROWS:,} x {WIDE_DIM:,} synthetic store", flush=True)
    cases.append((f"synthetic, {CLASSES} classes, {SOURCE} logits", synthetic_store(Path(tmp.name) / "wide.h5"), 1))
    md = ["## Wide features: 25,088 dims (`--part wide`)", "",
          f"`featx analyze STORE --transferability` as its own process (default `--max-memory`: half the memory "
          f"available once the store is loaded; default `--score-dims` 256). Wall seconds of the whole command and peak resident "
          f"memory of that process (its own VmHWM); the VGG16 case is run {args.repeat} times (min / max shown, "
          f"per-score seconds from the fastest run), since another engineer's jobs share the 2 cores. "
          f"Machine: {machine()}.", "",
          "| store | rows x dims | wall s | peak RSS GiB | exit | scores on PCA dims | null |", "|---|---|---|---|---|---|---|"]
    details = []
    try:
        for label, store, repeat in cases:
            runs = []
            for i in range(repeat):
                out = Path(tmp.name) / f"out-{len(details)}-{i}"
                print(f"analyze {store.name} ({i + 1}/{repeat})", flush=True)
                code, wall, rss, err = run_measured(["analyze", str(store), "--transferability", "--out", str(out)])
                runs.append((wall, rss, code, err, out))
            wall, rss, code, err, out = min(runs, key=lambda r: r[0])
            walls, peaks = [r[0] for r in runs], [r[1] for r in runs]
            code = max(r[2] for r in runs)
            s = next(iter(json.loads((out / "scores.json").read_text()).values())) if code == 0 else {}
            reduced = [k for k, v in s.get("score_dims", {}).items() if v is not None and v != s.get("dim")]
            nulls = [k for k in transfer.score_keys() if s.get(k) is None]
            span = (lambda v, f: f"{min(v):{f}} / {max(v):{f}}" if len(v) > 1 else f"{v[0]:{f}}")
            md.append(f"| {label} | {s.get('n', 0):,} x {s.get('dim', 0):,} | {span(walls, '.1f')} | "
                      f"{span(peaks, '.2f')} | {code} | {', '.join(reduced) or 'none'} | {', '.join(nulls) or 'none'} |")
            if code != 0:
                details += [f"### {label}: failed", "", "```", err, "```", ""]
                continue
            sec = s.get("seconds", {})
            details += [f"### {label}", "",
                        f"Memory budget {s['memory']['budget_mib']:,} MiB. Seconds and estimated peak (MiB) per score:",
                        "", "| score | seconds | estimate MiB | dims |", "|---|---|---|---|"]
            est = s["memory"]["estimate_mib"]
            for key in sec:
                details.append(f"| {key} | {sec[key]:.2f} | {est.get(key, '-')} | {s['score_dims'].get(key, '-')} |")
            details += ["", "Notes:", ""] + [f"- {n}" for n in s.get("notes", [])] + [""]
    finally:
        tmp.cleanup()
    return md + [""] + details + [
        "How: shrinkage H-score and Fisher come from the n x n Gram matrix of the (class-)centred features "
        "(the thin SVD through its eigenpairs; Ledoit-Wolf shrinkage from the same matrix), LogME and H-score "
        "from the same n x n side; F is read in float64 blocks of 64 MiB, never copied whole. Each score's "
        "peak is estimated from (n, d, classes) first; above the budget it runs on the first `--score-dims` "
        "principal components (randomized PCA of the float32 features, computed once) and says so, or is "
        "skipped with a note. Before this (issue 12) the VGG16 case died with a segmentation fault after 47 s at "
        "5.4 GB resident: shrinkage H-score and Fisher built the 25,088 x 25,088 Ledoit-Wolf covariance."]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("all", "narrow", "wide"), default="all")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--max-rows", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of the VGG16 case (wall time: min / max)")
    args = ap.parse_args()
    head = ["# `featx analyze` benchmark", "", "Run: `python benchmarks/bench_analyze.py` (both parts; "
            "`--part narrow` or `--part wide` reruns one and keeps the other section).", ""]
    old = RESULTS.read_text() if RESULTS.exists() else ""
    old_narrow, _, old_wide = old.partition(WIDE_MARK)
    old_narrow = old_narrow.split("\n## ", 1)[1] if "\n## " in old_narrow else ""
    narrow_md = narrow(args) if args.part in ("all", "narrow") else ["## " + old_narrow.strip()]
    wide_md = wide(args) if args.part in ("all", "wide") else [old_wide.strip()]
    text = "\n".join(head + narrow_md + ["", WIDE_MARK, ""] + wide_md) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
