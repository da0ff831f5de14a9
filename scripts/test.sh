#!/usr/bin/env bash
# Set up (a virtual environment in .venv with the package and its dev extra) and run
# the linter and the test suite. Any failure, including "no tests collected"
# (pytest exit 5), exits non-zero. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch/torchvision pinned to the releases this project is tested with.
.venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install --quiet -e '.[dev]'
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest "$@"
