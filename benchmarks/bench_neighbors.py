"""Nearest-neighbour search speed, and the calibration of the near-duplicate threshold.

Part ``speed``: synthetic stores of 100k and 1M rows x 1280 float32 (written to a temporary folder and
removed afterwards): loading the normalised rows, one exact query (blocked matrix product, rows in memory
or streamed from the store), a batch of queries, and the approximate index (``featx[ann]``, faiss IVF):
build time, query time and recall@k against the exact answer.

Part ``calibrate``: the shared monet-sisley paintings plus planted copies of the 60 test paintings in
train (an exact copy; a 224 -> 160 -> 224 resize saved as JPEG quality 75; a 90 % and an 80 % centre crop;
a horizontal flip), extracted with efficientnet_lite0 (real ImageNet weights): the similarity of each kind
of planted pair against the highest similarities between distinct real paintings.

    python benchmarks/bench_neighbors.py [--part all|speed|calibrate|ann-choice] [--sizes 100000 1000000]

Part ``ann-choice`` (needs usearch as well as faiss-cpu): the build time of an HNSW graph against the IVF
index featx builds, on 100k synthetic rows.

Writes benchmarks/results/neighbors.md (a part run alone keeps the other part's section as it was).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "neighbors.md"
DATA = Path(os.environ.get("FEATX_SHARED_DATA", ROOT.parent / "shared" / "data")) / "monet-sisley"
DIM = 1280
SPEED_MARK, CALIB_MARK, CHOICE_MARK = "<!-- part speed -->", "<!-- part calibrate -->", "<!-- part ann-choice -->"


def synthetic_store(path: Path, n: int, dim: int = DIM, seed: int = 0) -> Path:
    """A store of ``n`` clustered float32 rows (1000 Gaussian clusters), written in 50k-row batches."""
    sys.path.insert(0, str(ROOT / "tests"))
    from _synth import cfg

    from featx.store.writer import open_writer

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(1000, dim)).astype(np.float32)
    with open_writer(path, cfg()) as w:
        w.create(cfg(), dim, None, {"classes": ["a", "b"], "data_root": "/nonexistent"})
        for start in range(0, n, 50_000):
            k = min(50_000, n - start)
            c = rng.integers(0, 1000, k)
            X = centers[c] + rng.normal(size=(k, dim)).astype(np.float32) * 0.8
            w.append([f"img{i:07d}.jpg" for i in range(start, start + k)], (c % 2).tolist(),
                     ["train"] * k, X.astype(np.float32))
        w.finalize()
    return path


def _ms(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def speed(sizes: list[int]) -> str:
    import featx
    from featx.look import index as ann
    from featx.look.similarity import Vectors, top_k

    kept = _rows_of(RESULTS.read_text() if RESULTS.exists() else "", sizes)
    lines = ["| rows | store size | load normalised rows | 1 query, in memory | bare numpy product, same moment "
             "| 1 query, streamed from the store "
             "| 100 queries, in memory | ANN build | ANN query | ANN recall@10 | load average |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in sizes:
        tmp = Path(tempfile.mkdtemp(prefix="featx-bench-nn-"))
        try:
            t = time.perf_counter()
            path = synthetic_store(tmp / "synthetic.h5", n)
            print(f"{n}: store written in {time.perf_counter() - t:.0f} s", flush=True)
            store = featx.Store(path)
            q1 = store.features(ids=[store.ids[n // 2]])
            rng = np.random.default_rng(1)
            q100 = store.features(ids=list(store.ids[rng.choice(n, 100, replace=False)]))
            t = time.perf_counter()
            mem = Vectors(store, in_memory=True) if n * DIM * 4 <= 8 << 30 else None
            load = time.perf_counter() - t
            one = _ms(lambda: top_k(q1, mem, 10)) if mem is not None else float("nan")
            bare = _ms(lambda: mem._X @ q1[0]) if mem is not None else float("nan")
            many = _ms(lambda: top_k(q100, mem, 10), 3) if mem is not None else float("nan")
            streamed = _ms(lambda: top_k(q1, Vectors(store, in_memory=False), 10), 1)
            exact_rows, _ = top_k(q100, mem if mem is not None else Vectors(store, in_memory=False), 10)
            del mem
            build = query = recall = float("nan")
            if ann.available():
                t = time.perf_counter()
                idx = ann.load_or_build(store, progress=False)
                build = time.perf_counter() - t
                query = _ms(lambda: idx.search(q1, 10))
                got, _ = idx.search(q100, 10)
                recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, exact_rows)])
            size = path.stat().st_size / 2**30
            kept[n] = (f"| {n:,} | {size:.1f} GiB | {load:.1f} s | {one:.0f} ms | {bare:.0f} ms | {streamed:.0f} ms | {many:.0f} ms "
                         f"| {build:.0f} s | {query:.1f} ms | {recall:.3f} | {os.getloadavg()[0]:.1f} |")
            print(kept[n], flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return "\n".join(lines + [kept[n] for n in sorted(kept)])


def _rows_of(text: str, sizes: list[int]) -> dict[int, str]:
    """The speed table's rows already in ``text`` for sizes not measured now (a run of one size keeps the rest)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0].replace(",", "").isdigit() and int(cells[0].replace(",", "")) not in sizes:
            rows[int(cells[0].replace(",", ""))] = line
    return rows


PLANTS = ("copy", "resized", "crop90", "crop80", "flip")


def _plant(src: Path, dst: Path, kind: str) -> None:
    from PIL import Image

    if kind == "copy":
        shutil.copyfile(src, dst)
        return
    im = Image.open(src).convert("RGB")
    w, h = im.size
    if kind == "resized":
        im = im.resize((w * 160 // 224, h * 160 // 224), Image.BICUBIC).resize((w, h), Image.BICUBIC)
        im.save(dst, quality=75)
        return
    if kind.startswith("crop"):
        f = int(kind[4:]) / 100
        cw, ch = int(w * f), int(h * f)
        im = im.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)).resize((w, h))
    elif kind == "flip":
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    im.save(dst, quality=90)


def calibrate() -> str:
    import featx
    from featx.look.duplicates import DEFAULT_THRESHOLD
    from featx.look.similarity import Vectors, pairs_above, top_k

    tmp = Path(tempfile.mkdtemp(prefix="featx-calibrate-"))
    try:
        data = tmp / "monet-sisley"
        shutil.copytree(DATA, data)
        tests = sorted(p for p in (data / "test").rglob("*") if p.is_file())
        planted = {}
        for p in tests:
            for kind in PLANTS:
                dst = data / "train" / p.parent.name / f"planted-{kind}-{p.stem}.jpg"
                _plant(p, dst, kind)
                planted[dst.relative_to(data).as_posix()] = (kind, p.relative_to(data).as_posix())
        store = featx.extract("efficientnet_lite0", data, out=tmp / "store.h5", progress=False)
        ids = [str(i) for i in store.ids]
        row = {i: r for r, i in enumerate(ids)}
        V = Vectors(store)
        sims = {k: [] for k in PLANTS}
        for pid, (kind, orig) in planted.items():
            a, b = V.take([row[pid], row[orig]])
            sims[kind].append(float(a @ b))
        real = np.array([not i.split("/")[-1].startswith("planted-") for i in ids])
        rows, s = top_k(V.take(np.flatnonzero(real)), V, 1, exclude=np.flatnonzero(real), candidates=real)
        nearest = s[:, 0]
        ra, rb, top = pairs_above(V, 0.80, candidates=real)
        lines = [f"{len(tests)} test paintings, each planted in train five ways, among {int(real.sum())} real "
                 f"paintings; efficientnet_lite0, imagenet weights, `{store.fingerprint.get('layer')}` / "
                 f"`{store.fingerprint.get('pool')}`, {store.attrs['dtype']}.", "",
                 "| planted pair (copy in train, original in test) | min | 5th pct | median |",
                 "|---|---|---|---|"]
        for kind in PLANTS:
            v = np.array(sims[kind])
            lines.append(f"| {kind} | {v.min():.4f} | {np.percentile(v, 5):.4f} | {np.median(v):.4f} |")
        lines += ["", "| differently named real paintings: each one's nearest other painting | value |", "|---|---|",
                  f"| highest | {nearest.max():.4f} |", f"| 99th percentile | {np.percentile(nearest, 99):.4f} |",
                  f"| 95th percentile | {np.percentile(nearest, 95):.4f} |", f"| median | {np.median(nearest):.4f} |",
                  "", f"Pairs of differently named paintings at or above 0.80: {len(ra)}. The six most similar "
                  "(the collection holds the same painting under two names: docs/neighbors.md says which are):", ""]
        lines += [f"- {x:.3f} `{ids[a]}` ~ `{ids[b]}`" for a, b, x in list(zip(ra, rb, top))[:6]]
        lines += [
                  "", f"Default threshold (`featx.look.duplicates.DEFAULT_THRESHOLD`): {DEFAULT_THRESHOLD}; "
                  "planted pairs found at it: " + ", ".join(
                      f"{k} {np.mean(np.array(sims[k]) >= DEFAULT_THRESHOLD):.0%}" for k in PLANTS) + "."]
        return "\n".join(lines)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ann_choice(n: int = 100_000) -> str:
    """Build time of an HNSW graph (usearch, 8-bit) against faiss's IVF-SQ8 on the same normalised rows."""
    import faiss
    from usearch.index import Index

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(1000, DIM)).astype(np.float32)
    X = centers[rng.integers(0, 1000, n)] + rng.normal(size=(n, DIM)).astype(np.float32) * 0.8
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    t = time.perf_counter()
    Index(ndim=DIM, metric="cos", dtype="i8").add(np.arange(n), X, threads=os.cpu_count())
    hnsw = time.perf_counter() - t
    t = time.perf_counter()
    ivf = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(DIM), DIM, 1024, faiss.ScalarQuantizer.QT_8bit,
                                        faiss.METRIC_INNER_PRODUCT)
    ivf.cp.niter = 10
    ivf.train(X[rng.choice(n, 50_000, replace=False)])
    ivf.add(X)
    return (f"Building an index over {n:,} x {DIM} normalised rows, one after the other: usearch HNSW (8-bit) "
            f"{hnsw:.0f} s, faiss IVF1024,SQ8 (what `featx[ann]` builds) {time.perf_counter() - t:.0f} s "
            f"(load average {os.getloadavg()[0]:.1f}).")


def _section(text: str, mark: str, body: str) -> str:
    start = text.find(mark)
    if start < 0:
        return text.rstrip() + f"\n\n{mark}\n{body}\n{mark}\n"
    end = text.find(mark, start + len(mark))
    return text[:start] + f"{mark}\n{body}\n" + text[end:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("all", "speed", "calibrate", "ann-choice"), default="all",
                    help="ann-choice (not in all): HNSW (usearch) against IVF (faiss) build time")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    args = ap.parse_args()
    text = RESULTS.read_text() if RESULTS.exists() else (
        "# Nearest neighbours and duplicates\n\n`python benchmarks/bench_neighbors.py` on "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared with other jobs while it ran "
        "(the load average is the last column): compare the columns of one row.\n")
    if args.part in ("all", "calibrate"):
        text = _section(text, CALIB_MARK, "## Near-duplicate threshold\n\n" + calibrate())
        RESULTS.write_text(text)
    if args.part in ("all", "speed"):
        text = _section(text, SPEED_MARK, "## Search speed (synthetic rows x 1280 float32)\n\n" + speed(args.sizes))
        RESULTS.write_text(text)
    if args.part == "ann-choice":
        text = _section(text, CHOICE_MARK, "## Why IVF (faiss) and not HNSW\n\n" + ann_choice())
        RESULTS.write_text(text)
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
