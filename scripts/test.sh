#!/usr/bin/env bash
# Set up (.venv with everything: the train, dev and robustness extras), then run the linters (ruff, mypy) and the test
# suite. Any failure, including "no tests collected" (pytest exit 5), exits non-zero.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
.venv/bin/ruff check src tests benchmarks scripts
.venv/bin/mypy  # config in pyproject.toml: src/, protos excluded
.venv/bin/python -m pytest "$@"
