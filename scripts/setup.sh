#!/usr/bin/env bash
# Create .venv (if missing) and install robust-style into it, with only what the job needs.
#   scripts/setup.sh         the base install: serving side and client (serve, styles,
#                            stylize, demo). No torch: a few hundred MB, quick.
#   scripts/setup.sh train   plus training, export, weights, analysis (torch, onnx, ...)
#   scripts/setup.sh dev     plus the test tools and the robustness extra (what CI runs),
#                            and Debian's libb64 for Triton's perf_analyzer and chromium +
#                            chromium-driver for the web page test (as root)
# Installing more later is fine: `scripts/setup.sh train` on a base .venv adds to it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
job=${1:-base}
case "$job" in
  base) extra="" ;;
  train) extra="[train]" ;;
  dev) extra="[train,dev,robustness]" ;;
  *) echo "usage: scripts/setup.sh [base|train|dev]" >&2; exit 2 ;;
esac
if [ ! -x .venv/bin/python ]; then
  # The venv's own pip (Python >= 3.10 ships pip >= 22: editable installs, the resolver)
  # is enough; not upgrading it saves a round trip to the index.
  "$PY" -m venv .venv
fi
if [ "$job" != base ]; then
  # torch/torchvision pinned to the releases this project is tested with.
  .venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
fi
.venv/bin/python -m pip install --quiet --no-compile -e ".${extra}"
if [ "$job" = dev ]; then
  # perf_analyzer (dev extra) links libb64 (Debian: libb64-0d); the tests that run it skip
  # with this reason when it is missing.
  if ldconfig -p 2>/dev/null | grep -q 'libb64\.so\.0d'; then
    :
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq libb64-0d >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq libb64-0d >/dev/null; }
  else
    echo "setup.sh: warning: libb64 (Debian package libb64-0d) is missing and cannot be" \
         "installed here (needs root and apt-get); the perf_analyzer tests will be skipped." \
         "Install it with: sudo apt-get install libb64-0d" >&2
  fi
  # The web page test (tests/test_web_page.py) drives Debian's headless Chromium.
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    :
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq chromium chromium-driver >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; }
  else
    echo "setup.sh: warning: chromium and chromium-driver are missing and cannot be installed" \
         "here (needs root and apt-get); the web page test will be skipped." \
         "Install them with: sudo apt-get install chromium chromium-driver" >&2
  fi
fi
