"""``featx explore`` on a 100k-row store: start, first map, neighbours, thumbnails, memory, UMAP.

The store is made from the shared paintings repeated: the real efficientnet_lite0 store of ``styles``
(1,953 paintings), its rows repeated with small Gaussian noise (``--noise`` times the features' RMS) up to
``--rows`` rows, whose ids ``copyNNN/<style>/<file>`` name hard links (regular files, inside the data folder)
of the real painting files. It is written with featx's store writer and the real store's fingerprint, and
kept in ``--work`` (reused when it is there).

Everything is measured against the real server process (``featx explore STORE --port 0 --no-browser``):

* cold: no ``<store>.explore/`` folder; process start to its "serving at" line, then the page in headless
  Chromium until ``window.featx.mapReady()`` (the PCA map computed);
* warm (a second process, the PCA map cached, thumbnails removed): the same; then ``/api/painting`` for
  20 random rows (the first call builds the in-memory vectors, reported apart); 100 thumbnails twice
  (made, then cached) over 6 parallel connections; VmRSS/VmHWM of the server; UMAP until ready (capped).

    python benchmarks/bench_explore.py [--work /tmp/featx-bench-explore] [--rows 100000] [--umap-cap 600]

Writes benchmarks/results/explore.md and explore.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = Path(os.environ.get("FEATX_SHARED_DATA", ROOT.parent / "shared" / "data")) / "styles"
REAL = ROOT / "cache" / "styles--efficientnet_lite0--pre_logits-none--e395e3c4ac.h5"
NOTES = "<!-- notes: written by hand, kept by a new run -->"
TARGETS = {"first_map_s": 3.0, "neighbours_median_ms": 150.0, "thumbs_warm_s": 1.0, "rss_gb": 1.5}


# ---------------------------------------------------------------- the synthetic store

def real_store(work: Path) -> Path:
    """The real efficientnet_lite0 store of the shared styles (extracted into ``work`` when not cached)."""
    if REAL.exists():
        return REAL
    import featx

    return featx.extract("efficientnet_lite0", SHARED, out=work / "styles-real.h5", progress=False).path


def link_tree(src_root: Path, ids: list[str], data: Path, copies: int) -> None:
    """``data/copyNNN/<id>`` for each copy: hard links of the real files (copy000 is a copy where linking
    the shared files is refused, and later copies link to it)."""
    first = data / "copy000"
    for i in ids:
        dst = first / i
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src_root / i, dst)
        except OSError:
            shutil.copyfile(src_root / i, dst)
    for c in range(1, copies):
        for i in ids:
            dst = data / f"copy{c:03d}" / i
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(first / i, dst)


def synthetic_store(work: Path, rows: int, noise: float, seed: int = 0) -> Path:
    """The ``rows``-row store in ``work`` (made once): the real rows repeated, with Gaussian noise."""
    import featx
    from featx.config import ExtractCfg
    from featx.store.writer import open_writer

    path = work / f"styles-x{rows}.h5"
    if path.exists():
        s = featx.Store(path)
        if len(s) == rows and s.complete:
            return path
    real = featx.Store(real_store(work))
    ids = [str(i) for i in real.ids]
    X = real.features()
    labels, splits = real.labels(), real.splits.astype(str)
    copies = -(-rows // len(ids))
    data = work / "data"
    link_tree(Path(real.data_root), ids, data, copies)
    sigma = noise * float(np.sqrt(np.mean(X.astype(np.float64) ** 2)))
    cfg = ExtractCfg.from_dict(real.fingerprint)
    a = real.attrs
    meta = {"classes": [str(c) for c in real.classes], "data_root": str(data), "dataset": "styles-repeated",
            "backbone": a.get("backbone", {}), "layout": a.get("layout", ""), "split_source": a.get("split_source", ""),
            "source": a.get("source", {}), "numeric": a.get("numeric", {})}
    rng = np.random.default_rng(seed)
    with open_writer(path, cfg, overwrite=True) as w:
        w.create(cfg, X.shape[1], None, meta)
        done = 0
        for c in range(copies):
            k = min(len(ids), rows - done)
            noisy = X[:k] + rng.normal(scale=sigma, size=(k, X.shape[1])).astype(np.float32)
            w.append([f"copy{c:03d}/{i}" for i in ids[:k]], labels[:k], list(splits[:k]), noisy.astype(np.float32))
            done += k
        w.finalize()
    return path


# ---------------------------------------------------------------- measuring the server

def status_of(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in GB (10^9 bytes)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            out[key] = int(value.split()[0]) * 1024 / 1e9
    return out


def get(url: str) -> tuple[float, bytes]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as r:
        body = r.read()
    return time.perf_counter() - t, body


def start(store: Path, work: Path):
    """The server and the seconds from process start to its "serving at" line."""
    from helpers import ExploreServer

    t = time.perf_counter()
    server = ExploreServer(store, "--runs", work / "runs", cwd=work)
    return server, time.perf_counter() - t


TIMELINE = """return performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/'))
  .map((e) => [new URL(e.name).pathname, e.startTime / 1000, e.responseStart / 1000, e.responseEnd / 1000]);"""


def map_on_screen(driver, url: str, cap: float = 600) -> tuple[float, list]:
    """Seconds from ``driver.get(url)`` until the page says its map is drawn, and the page's API requests
    (path, sent, first byte, last byte: seconds after the navigation started)."""
    t = time.perf_counter()
    driver.get(url)
    while time.perf_counter() - t < cap:
        if driver.execute_script("return !!(window.featx && window.featx.mapReady())"):
            return time.perf_counter() - t, driver.execute_script(TIMELINE)
        time.sleep(0.02)
    raise RuntimeError(f"the map was not on screen after {cap:.0f} s")


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu if ln.startswith("Model name")), platform.processor())
    mem = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
              .split()[1]) / 2**20
    return {"cpu": model, "cores": os.cpu_count(), "ram_gib": round(mem, 1), "python": platform.python_version()}


def measure(store: Path, work: Path, umap_cap: float, seed: int = 1) -> dict:
    from featx.explore.collection import sidecar

    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import chrome

    res: dict = {}
    shutil.rmtree(sidecar(store), ignore_errors=True)
    (work / "runs").mkdir(exist_ok=True)
    driver = chrome(work)
    try:
        # cold: nothing made yet
        server, res["start_cold_s"] = start(store, work)
        try:
            res["first_map_cold_s"], res["timeline_cold"] = map_on_screen(driver, server.url)
            res["cold_after_map"] = status_of(server.proc.pid)
        finally:
            server.stop()
        shutil.rmtree(sidecar(store) / "thumbs", ignore_errors=True)
        driver.get("about:blank")
        # warm: the PCA map cached
        server, res["start_warm_s"] = start(store, work)
        try:
            res["first_map_warm_s"], res["timeline_warm"] = map_on_screen(driver, server.url)
            res["redraw_ms"] = driver.execute_script("return window.featx.redrawMs(15)")  # one pan / zoom step
            driver.get("about:blank")
            base = server.base
            state = json.loads(get(f"{base}/api/state")[1])
            version = state["stores"][0]["version"]
            n = state["stores"][0]["rows"]
            res["map_json_s"], body = get(f"{base}/api/map/0/pca")
            res["map_json_mb"] = len(body) / 2**20
            rng = np.random.default_rng(seed)
            rows = rng.choice(n, 21, replace=False)
            res["neighbours_first_s"] = get(f"{base}/api/painting/0/{rows[0]}?v={version}")[0]
            times = [get(f"{base}/api/painting/0/{r}?v={version}")[0] * 1000 for r in rows[1:]]
            res["neighbours_ms"] = times
            res["neighbours_median_ms"] = float(np.median(times))
            res["neighbours_p90_ms"] = float(np.percentile(times, 90))
            grid = rng.choice(n, 100, replace=False)
            for kind in ("cold", "warm"):
                t = time.perf_counter()
                with ThreadPoolExecutor(6) as pool:
                    sizes = list(pool.map(lambda r: len(get(f"{base}/api/thumb/0/{r}?v={version}")[1]), grid))
                res[f"thumbs_{kind}_s"] = time.perf_counter() - t
            res["thumb_kb"] = float(np.mean(sizes)) / 1024
            res["after_requests"] = status_of(server.proc.pid)
            res["rss_gb"] = res["after_requests"]["VmHWM"]
            if umap_cap > 0:
                t = time.perf_counter()
                res["umap_status"] = "not reached"
                while time.perf_counter() - t < umap_cap:
                    m = json.loads(get(f"{base}/api/map/0/umap")[1])
                    if m["status"] in ("ready", "failed"):
                        res["umap_status"] = m["status"] + (f": {m['error']}" if m.get("error") else "")
                        break
                    time.sleep(2)
                res["umap_s"] = time.perf_counter() - t
                res["after_umap"] = status_of(server.proc.pid)
        finally:
            server.stop()
    finally:
        driver.quit()
    return res


# ---------------------------------------------------------------- the report

def report(info: dict, res: dict) -> str:
    t = TARGETS

    def verdict(value: float, target: float) -> str:
        return "met" if value < target else "**missed**"

    rows = [
        ("server start to \"serving at\" (cold / warm)", "", f"{res['start_cold_s']:.2f} s / {res['start_warm_s']:.2f} s", ""),
        ("first PCA map on screen, cold (computed)", f"< {t['first_map_s']:.0f} s", f"{res['first_map_cold_s']:.2f} s",
         verdict(res["first_map_cold_s"], t["first_map_s"])),
        ("first PCA map on screen, warm (cached)", f"< {t['first_map_s']:.0f} s", f"{res['first_map_warm_s']:.2f} s",
         verdict(res["first_map_warm_s"], t["first_map_s"])),
        ("`/api/map/0/pca` once more, over HTTP (JSON size)", "", f"{res['map_json_s']:.2f} s ({res['map_json_mb']:.1f} MiB)", ""),
        ("first `/api/painting` (builds the in-memory vectors)", "", f"{res['neighbours_first_s']:.2f} s", ""),
        ("`/api/painting` (k=12 neighbours), 20 rows: median / p90", f"< {t['neighbours_median_ms']:.0f} ms",
         f"{res['neighbours_median_ms']:.0f} ms / {res['neighbours_p90_ms']:.0f} ms",
         verdict(res["neighbours_median_ms"], t["neighbours_median_ms"])),
        ("one redraw of the map in Chromium, as each pan or zoom step does (median of 15)", "",
         f"{res['redraw_ms']:.0f} ms", ""),
        ("100 thumbnails, 6 connections, cold (made)", "", f"{res['thumbs_cold_s']:.2f} s", ""),
        ("100 thumbnails, 6 connections, warm (cached)", f"< {t['thumbs_warm_s']:.0f} s", f"{res['thumbs_warm_s']:.2f} s",
         verdict(res["thumbs_warm_s"], t["thumbs_warm_s"])),
        ("server VmRSS / VmHWM after the above", f"< {t['rss_gb']} GB",
         f"{res['after_requests']['VmRSS']:.2f} / {res['after_requests']['VmHWM']:.2f} GB",
         verdict(res["after_requests"]["VmHWM"], t["rss_gb"])),
    ]
    if "umap_s" in res:
        rows.append(("UMAP map ready (background thread)", "", f"{res['umap_s']:.0f} s ({res['umap_status']})", ""))
        rows.append(("server VmRSS / VmHWM after UMAP", "",
                     f"{res['after_umap']['VmRSS']:.2f} / {res['after_umap']['VmHWM']:.2f} GB", ""))
    lines = ["| measure | target | measured | |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += ["", ("The page's API requests while the first map came up (seconds after the navigation started: "
                   "sent, first byte, last byte):"), ""]
    for kind in ("cold", "warm"):
        lines.append(f"- {kind}, map drawn at {res[f'first_map_{kind}_s']:.2f} s: " + "; ".join(
            f"`{p}` {a:.2f} / {b:.2f} / {c:.2f}" for p, a, b, c in res[f"timeline_{kind}"]))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/featx-bench-explore"))
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--noise", type=float, default=0.05, help="noise sd, as a fraction of the features' RMS")
    ap.add_argument("--umap-cap", type=float, default=600, help="seconds to wait for UMAP (0: do not start it)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "tests"))
    t = time.perf_counter()
    store = synthetic_store(args.work, args.rows, args.noise)
    print(f"store {store} ({store.stat().st_size / 2**20:.0f} MiB) ready in {time.perf_counter() - t:.0f} s", flush=True)
    info = {**machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_before": os.getloadavg(), "rows": args.rows, "noise": args.noise,
            "store_mib": store.stat().st_size / 2**20}
    res = measure(store, args.work, args.umap_cap)
    info["load_after"] = os.getloadavg()
    table = report(info, res)
    print(table)
    lb, la = info["load_before"], info["load_after"]
    text = (f"# featx explore on {args.rows:,} rows\n\n"
            f"`python benchmarks/bench_explore.py`, {info['date']}, on {info['cpu']}, {info['cores']} cores, "
            f"{info['ram_gib']} GiB, Python {info['python']}. The machine is shared with other jobs: load average "
            f"(1/5/15 min) {lb[0]:.2f} / {lb[1]:.2f} / {lb[2]:.2f} before and {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} "
            "after, on 2 cores.\n\n"
            f"Store: the {args.rows:,}-row store made from the shared `styles` paintings repeated (1,953 real "
            f"efficientnet_lite0 rows x 1280 float32 plus Gaussian noise of sd {args.noise} x their RMS, ids naming "
            f"hard links of the real files), {info['store_mib']:.0f} MiB. The real server process "
            "(`featx explore STORE --port 0 --no-browser`), the page in headless Chromium, the API over HTTP "
            "(urllib).\n\n" + table + "\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    old = (RESULTS / "explore.md").read_text() if (RESULTS / "explore.md").exists() else ""
    notes = old[old.find(NOTES):old.rfind(NOTES) + len(NOTES)] if old.count(NOTES) >= 2 else ""
    (RESULTS / "explore.md").write_text(text + (f"\n{notes}\n" if notes else ""))
    (RESULTS / "explore.json").write_text(json.dumps({"machine": info, "targets": TARGETS, "results": res},
                                                     indent=1) + "\n")
    print(f"wrote {RESULTS / 'explore.md'}")


if __name__ == "__main__":
    main()
