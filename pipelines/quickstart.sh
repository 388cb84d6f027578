#!/usr/bin/env bash
# featx quick start: the whole pipeline on scikit-learn's bundled handwritten digits
# (real scanned digits that install with featx's dependencies; nothing is downloaded).
#   bash pipelines/quickstart.sh [DATA_DIR]      (PER_CLASS=N images per digit, default 50)
set -euo pipefail
DATA=${1:-examples/digits}
STORE=cache/digits--efficientnet_lite0.h5
run() { echo "+ $*" >&2; "$@"; }

run featx sample-data "$DATA" --per-class "${PER_CLASS:-50}"
run featx extract --backbone efficientnet_lite0 --data "$DATA" --out "$STORE" --with-logits
run featx info "$STORE"
run featx fit "$STORE" --clf softmax,linearsvc --name quickstart-digits --overwrite
run featx analyze "$STORE" --transferability --pca --out runs/quickstart-analyze --overwrite
echo "quick start done: see runs/quickstart-digits/ and runs/quickstart-analyze/" >&2
