#!/usr/bin/env bash
# Create .venv (if missing) and install robust-style into it.
#   scripts/setup.sh         the package with training and export (train extra)
#   scripts/setup.sh dev     plus the dev and robustness extras (tests, linters, parity)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extra="[train]"
[ "${1:-}" = "dev" ] && extra="[train,dev,robustness]"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch/torchvision pinned to the releases this project is tested with.
.venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install --quiet -e ".${extra}"
