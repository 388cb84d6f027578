"""Extraction throughput: featx vs a naive loop vs the model-only ceiling, on the same images in one run.

    python benchmarks/bench_extract.py [--data ../shared/data/styles] [--limit 0] [--backbone efficientnet_lite0]

Figures (images/s) go to benchmarks/results/extract.md and .json. Run it on a quiet
machine: anything else running on the cores changes the numbers. Random weights
(``--weights none``) are used so every architecture can be measured offline; speed
does not depend on the weight values.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "styles"

NAIVE = r"""
import sys, time, json
t0 = time.perf_counter()
from pathlib import Path
import numpy as np, torch, timm
from PIL import Image
torch.set_num_threads(int(sys.argv[3]))
paths = sorted(p for p in Path(sys.argv[1]).rglob('*') if p.suffix.lower() in ('.jpg', '.jpeg', '.png'))
if int(sys.argv[4]): paths = paths[: int(sys.argv[4])]
model = timm.create_model(sys.argv[2], pretrained=False, num_classes=0).eval()
mean = np.array([0.5, 0.5, 0.5], np.float32); std = np.array([0.5, 0.5, 0.5], np.float32)
out = []
t1 = time.perf_counter()
for i in range(0, len(paths), 10):   # the seeds' Keras-style loop: PIL in the main thread, fp32, batch 10
    batch = []
    for p in paths[i:i + 10]:
        img = Image.open(p).convert('RGB').resize((224, 224), Image.BICUBIC)
        batch.append((np.asarray(img, np.float32) / 255 - mean) / std)
    x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        out.append(model(x).numpy())
t2 = time.perf_counter()
print(json.dumps({"n": len(paths), "loop_s": t2 - t1, "total_s": t2 - t0}))
"""

THINGSVISION = r"""
import sys, time, json
t0 = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[3]))
from thingsvision import get_extractor
from thingsvision.utils.data import ImageDataset, DataLoader
extractor = get_extractor(model_name=sys.argv[2], source="timm", device="cpu", pretrained=False)
dataset = ImageDataset(root=sys.argv[1], out_path=sys.argv[4], backend=extractor.get_backend(),
                       transforms=extractor.get_transformations())
batches = DataLoader(dataset=dataset, batch_size=32, backend=extractor.get_backend())
t1 = time.perf_counter()
feats = extractor.extract_features(batches=batches, module_name="global_pool", flatten_acts=True)
t2 = time.perf_counter()
print(json.dumps({"n": int(feats.shape[0]), "dim": int(feats.shape[1]), "loop_s": t2 - t1, "total_s": t2 - t0}))
"""

MODEL_ONLY = r"""
import sys, time, json
import torch, timm, torchvision
torch.set_num_threads(int(sys.argv[2]))
name, res = sys.argv[1], {}
if name.startswith("tv:"):
    model = torchvision.models.get_model(name[3:], weights=None).eval()
else:
    model = timm.create_model(name, pretrained=False, num_classes=0).eval()
for layout in ("contiguous", "channels_last"):
    m = model.to(memory_format=torch.channels_last) if layout == "channels_last" else model
    for bs in (10, 16, 32):
        x = torch.randn(bs, 3, 224, 224)
        if layout == "channels_last":
            x = x.to(memory_format=torch.channels_last)
        with torch.inference_mode():
            m(x)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < float(sys.argv[3]):
                m(x); n += bs
        res[f"{layout}_b{bs}"] = n / (time.perf_counter() - t0)
# two batches at once in threads, one intra-op thread each (what featx does on CPU)
from concurrent.futures import ThreadPoolExecutor
threads = int(sys.argv[2])
torch.set_num_threads(1)
x = torch.randn(10, 3, 224, 224).to(memory_format=torch.channels_last)
def loop():
    n, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        while time.perf_counter() - t0 < float(sys.argv[3]):
            m(x); n += 10
    return n
t0 = time.perf_counter()
with ThreadPoolExecutor(threads) as ex:
    total = sum(f.result() for f in [ex.submit(loop) for _ in range(threads)])
res[f"channels_last_b10_{threads}streams"] = total / (time.perf_counter() - t0)
print(json.dumps(res))
"""


def run_json(args: list[str]) -> dict:
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def featx_run(data: Path, backbone: str, out: Path, batch_size: int | None, workers: int | None,
              streams: int | None = None) -> dict:
    """`featx extract` as a user runs it, from a fresh interpreter."""
    cmd = [sys.executable, "-m", "featx.cli", "extract", "-b", backbone, "--weights", "none", "-d", str(data),
           "-o", str(out), "--overwrite", "-q"]
    if batch_size:
        cmd += ["--batch-size", str(batch_size)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    if streams is not None:
        cmd += ["--streams", str(streams)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    total = time.perf_counter() - t0
    loop_ips = float(proc.stdout.split(" img/s")[0].rsplit(",", 1)[-1]) if " img/s" in proc.stdout else float("nan")
    return {"total_s": total, "loop_ips": loop_ips, "stdout": proc.stdout.strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images (0 = all)")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--arch", default="tf_efficientnet_lite0", help="timm name of the same network")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--seconds", type=float, default=8.0, help="per model-only measurement")
    ap.add_argument("--thingsvision-python", default="",
                    help="python of a venv with thingsvision 2.7.3 (it pins torch 2.0; keep it apart)")
    ap.add_argument("--configs", default="auto,b10w1s1,b32w1s1",
                    help="featx settings to time: auto, or b<batch>w<workers>s<streams>")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if args.limit:
            data = Path(tmp) / "subset"
            files = sorted(p for p in args.data.rglob("*") if p.is_file())
            files = files[:: max(1, len(files) // args.limit)][: args.limit]  # spread over the classes
            for p in files:
                dst = data / p.relative_to(args.data)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, dst)
        n = sum(1 for p in data.rglob("*") if p.is_file())
        results = {"machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, {platform.processor()}",
                   "images": n, "data": str(args.data), "backbone": args.backbone,
                   "date": time.strftime("%Y-%m-%d")}
        results["model_only"] = run_json([sys.executable, "-c", MODEL_ONLY, args.arch, str(args.threads),
                                          str(args.seconds)])
        results["naive"] = run_json([sys.executable, "-c", NAIVE, str(data), args.arch, str(args.threads),
                                     "0"])
        if args.thingsvision_python:
            results["thingsvision"] = run_json([args.thingsvision_python, "-c", THINGSVISION, str(data), args.arch,
                                                str(args.threads), str(Path(tmp) / "tv")])
        results["featx"] = {}
        for conf in args.configs.split(","):  # e.g. auto, b10w1s1 (batch, workers, streams)
            knobs = dict(re.findall(r"([bws])(\d+)", conf))
            bs, wk, st = (int(knobs[k]) if k in knobs else None for k in "bws")
            results["featx"][conf] = featx_run(data, args.backbone, Path(tmp) / f"{conf}.h5", bs, wk, st)
            # cache hit, from a fresh interpreter
        # the ceiling again at the end: machine speed drifts; the best of both runs is the ceiling used
        after = run_json([sys.executable, "-c", MODEL_ONLY, args.arch, str(args.threads), str(args.seconds)])
        results["model_only"] = {k: max(v, after[k]) for k, v in results["model_only"].items()}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "featx.cli", "extract", "-b", args.backbone, "--weights", "none",
                        "-d", str(data), "-o", str(Path(tmp) / "auto.h5")], check=True, capture_output=True)
        results["cache_hit_s"] = time.perf_counter() - t0
    write(results)


def write(r: dict) -> None:
    best_model = max(r["model_only"].values())
    naive = r["naive"]
    n = r["images"]
    lines = [f"# Extraction throughput ({r['date']})", "",
             f"Machine: {r['machine']}. Images: {n} from `{Path(r['data']).name}`. Network: {r['backbone']} "
             "(random weights, 224 px, fp32 on CPU). All figures from the same run.", "",
             "| what | images/s in the loop | end to end (wall, incl. interpreter start, imports, model build) |",
             "|---|---|---|",
             f"| naive loop (PIL in main thread, fp32, batch 10, contiguous) | {n / naive['loop_s']:.1f} | "
             f"{n / naive['total_s']:.1f} img/s ({naive['total_s']:.1f} s) |"]
    if "thingsvision" in r:
        tv = r["thingsvision"]
        lines.append(f"| thingsvision 2.7.3 (timm source, batch 32) | {n / tv['loop_s']:.1f} | "
                     f"{n / tv['total_s']:.1f} img/s ({tv['total_s']:.1f} s) |")
    for conf, f in r["featx"].items():
        lines.append(f"| `featx extract` ({conf}) | {f['loop_ips']:.1f} | {n / f['total_s']:.1f} img/s "
                     f"({f['total_s']:.1f} s) |")
    streams = [k for k in r["model_only"] if "streams" in k]
    lines += ["", "Model-only forward on random tensors (the ceiling; best of a run before and after the rest), "
              "images/s:", "",
              "| layout | " + " | ".join(k.split("_b")[1] for k in r["model_only"] if k.startswith("contig")) + " |",
              "|---|" + "---|" * 3]
    for layout in ("contiguous", "channels_last"):
        vals = [f"{v:.1f}" for k, v in r["model_only"].items() if k.startswith(layout) and "streams" not in k]
        lines.append(f"| {layout} (batch) | " + " | ".join(vals) + " |")
    for k in streams:
        lines.append(f"\n{k.split('_')[-1]} x 1 thread, channels_last, batch 10: {r['model_only'][k]:.1f} img/s")
    best_featx = max(f["loop_ips"] for f in r["featx"].values())
    best_e2e = max(n / f["total_s"] for f in r["featx"].values())
    lines += ["", f"featx loop / best model-only: {best_featx / best_model:.0%}; "
              f"featx end to end / naive end to end: {best_e2e / (n / naive['total_s']):.2f}x; "
              + (f"featx end to end / thingsvision end to end: {best_e2e / (n / r['thingsvision']['total_s']):.2f}x; "
                 if "thingsvision" in r else "") +
              f"cache-hit re-run: {r['cache_hit_s']:.2f} s wall.", ""]
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "extract.json").write_text(json.dumps(r, indent=1))
    (out / "extract.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
