#!/usr/bin/env bash
# GPU readiness in one command: on a machine with an NVIDIA GPU, install what is needed
# into .venv (scripts/setup.sh dev, plus the TensorRT libraries onnxruntime-gpu links),
# then run scripts/gpu_check.py: DDP training (1 and all GPUs, bf16 and fp16), resume,
# export, serving on TensorRT and CUDA (parity, engine cache reuse, first-request latency),
# steady latency/throughput and the project's benchmarks. Report: gpu-check/report.md
# and report.json. Arguments are passed to gpu_check.py (e.g. --only serve,steady).
# Without a GPU: one line on stderr, exit 2, nothing installed. --device-mode [ARGS]: the
# lent-device mode, scripts/gpu_device.py measure ARGS (docs/gpu.md).
set -euo pipefail
cd "$(dirname "$0")/.."

listing=$(nvidia-smi -L 2>/dev/null || true)
if ! grep -q '^GPU ' <<<"$listing"; then
  echo "gpu_check: no CUDA GPU on this machine (nvidia-smi lists none); nothing to check" >&2
  exit 2
fi

# --device-mode: the lent machine without a registry (docs/gpu.md): nothing installed with
# pip, the carried wheels unpacked into gpu-check/device/site, the machine's own torch.
if [[ ${1:-} == --device-mode ]]; then
  shift
  exec "$(command -v python3 || command -v python)" scripts/gpu_device.py measure "$@"
fi

scripts/setup.sh dev
PY=.venv/bin/python

# onnxruntime-gpu's TensorRT EP links one TensorRT major (libnvinfer.so.N) built for one CUDA
# major: install exactly that from NVIDIA's PyPI wheels (tensorrt-cuXX-libs).
read -r trt_major cuda_major < <("$PY" - <<'EOF'
import re
from pathlib import Path
import onnxruntime
from onnxruntime.capi import build_and_package_info as info
so = Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime_providers_tensorrt.so"
m = re.search(rb"libnvinfer\.so\.(\d+)", so.read_bytes())
print(m.group(1).decode() if m else 10, str(info.cuda_version).split(".")[0])
EOF
)
"$PY" -m pip install --quiet "tensorrt-cu${cuda_major}-libs>=${trt_major},<$((trt_major + 1))"

# The server runs in subprocesses: put the CUDA, cuDNN and TensorRT libraries of the wheels
# on the loader path for all of them.
libs=$("$PY" - <<'EOF'
import site
from pathlib import Path
dirs = set()
for sp in site.getsitepackages():
    for pat in ("nvidia/*/lib", "nvidia/*/*/lib", "tensorrt_libs"):
        dirs.update(str(p) for p in Path(sp).glob(pat) if p.is_dir())
print(":".join(sorted(dirs)))
EOF
)
export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PWD/.venv/bin:$PATH"   # torchrun and robust-style of this venv
exec "$PY" scripts/gpu_check.py "$@"
