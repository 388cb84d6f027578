"""What the store's change detection costs: the stat walk of a large tree and a cache-hit re-run.

    python benchmarks/bench_store.py [--files 100000] [--hit-files 10000] [--machine "2-core CPU"]

Builds a tree of tiny image-named files (discovery stats files, it does not read them) in a
temporary folder, then times:

* ``load_dataset`` on ``--files`` files (walk + one stat per file + hash split), warm cache;
* the comparison of that dataset with a store holding every row (``store_state``: reads ids,
  labels, splits and stats, diffs them);
* ``featx extract ...`` as a fresh process that finds a cache hit on ``--hit-files`` files and
  on ``--files`` files: wall time including interpreter start, as a user sees it.

Stores are written directly from the discovered stats (pixels fingerprint), so no image is
decoded. Writes ``benchmarks/results/store.md`` and ``store.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from featx.data.discover import load_dataset
from featx.extraction.options import ExtractOptions, SyncOptions
from featx.extraction.plan import plan_extraction, store_meta, store_state
from featx.store.writer import open_writer

ROOT = Path(__file__).resolve().parents[1]


def make_tree(root: Path, n: int, per_folder: int = 1000) -> Path:
    per_folder = min(per_folder, max(1, n // 2))
    for k in range(n):
        d = root / f"class{k // per_folder % 2}" / f"part{k // per_folder:03d}"
        if k % per_folder == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"img{k:07d}.jpg").write_bytes(b"x")
    return root


def write_store(data: Path, out: Path) -> None:
    """A complete pixels store over every file of ``data``, made from the discovered stats (no decoding)."""
    plan = plan_extraction(ExtractOptions("pixels", data, out=out))
    ds = plan.dataset
    cfg = plan.cfg
    with open_writer(out, cfg) as w:
        w.create(cfg, 8, None, store_meta(plan))
        step = 50_000
        for a in range(0, len(ds), step):
            sl = slice(a, min(len(ds), a + step))
            w.append(list(ds.ids[sl]), ds.labels[sl], list(ds.split[sl]), np.zeros((sl.stop - a, 8), np.float32),
                     size=ds.size[sl], mtime_ns=ds.mtime_ns[sl])
        w.finalize()


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cli_hit(data: Path, out: Path) -> float:
    cmd = [sys.executable, "-m", "featx.cli", "extract", "-b", "pixels", "-d", str(data), "-o", str(out), "-q"]
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        assert proc.returncode == 0 and "cache hit" in proc.stdout, proc.stdout + proc.stderr
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--hit-files", type=int, default=10_000)
    ap.add_argument("--machine", default=f"{platform.machine()} CPU")
    args = ap.parse_args()
    results: dict = {"machine": args.machine, "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in sorted({args.hit_files, args.files}):
            data = make_tree(tmp / f"tree{n}", n)
            out = tmp / f"tree{n}.h5"
            write_store(data, out)
            plan = plan_extraction(ExtractOptions("pixels", data, out=out))
            row = {"files": n,
                   "discover_s": best(lambda: load_dataset(data)),
                   "compare_s": best(lambda: store_state(plan, SyncOptions())),
                   "cli_cache_hit_s": cli_hit(data, out),
                   "store_mb": out.stat().st_size / 2**20}
            assert store_state(plan, SyncOptions()).cache_hit
            results[str(n)] = row
            print(json.dumps(row))
    res_dir = ROOT / "benchmarks" / "results"
    (res_dir / "store.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["# Store change detection: stat walk and cache-hit cost", "",
             f"Machine: {args.machine}, Python {results['python']}. Produced by `python benchmarks/bench_store.py`. "
             "Tiny image-named files in class/part folders of 1,000 files, warm file-system cache; best of 3.", "",
             "| files | discover (walk + stat + split) s | compare with store s | `featx extract` cache hit, "
             "fresh process s |", "|---|---|---|---|"]
    for key in sorted((k for k in results if k.isdigit()), key=int):
        r = results[key]
        lines.append(f"| {r['files']:,} | {r['discover_s']:.2f} | {r['compare_s']:.2f} | {r['cli_cache_hit_s']:.2f} |")
    (res_dir / "store.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
