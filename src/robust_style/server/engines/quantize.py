"""int8 post-training quantisation by NNCF, run in a child process.

``nncf.quantize`` (symmetric per-channel weights, per-tensor activations, fast bias
correction) on OpenVINO's model of the ``.onnx`` bytes, calibrated on photos. It runs in a
child interpreter, never in the server's: ``import nncf`` imports every framework it finds,
torch included, and the serving path never imports torch (its memory and start-up time are
what the base install avoids). The child blocks ``torch`` before importing NNCF: its
OpenVINO backend does not need it, and the import drops from ~6 s to under 1 s. The child's
memory peak also stays out of the server's budget. The result (OpenVINO IR) is kept per
model bytes and calibration, in memory, so a reload of the same file does not redo it.

Run as ``python -m robust_style.server.engines.quantize MODEL.onnx CALIB.npz OUT.xml``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from robust_style.errors import first_line

__all__ = ["nncf_status", "quantize_int8"]

#: A quantisation of the bundled style at the calibration size takes ~10 s on 2 cores.
TIMEOUT_SECONDS = 600

_CACHE: dict[str, tuple[str, bytes]] = {}
_LOCK = threading.Lock()


def nncf_status() -> str:
    """``""`` when NNCF is installed (int8 can be tried), else why not. Found, not
    imported: the import happens in the child."""
    if importlib.util.find_spec("nncf") is None:
        return "ModuleNotFoundError: No module named 'nncf' (pip install 'robust-style[int8]')"
    return ""


def quantize_int8(model: bytes, calibration: list[np.ndarray]) -> tuple[str, bytes]:
    """``model`` quantised to int8 as OpenVINO IR ``(xml text, weights)``; RuntimeError
    with the child's last error line if NNCF fails."""
    digest = hashlib.sha256(model)
    for image in calibration:
        digest.update(np.ascontiguousarray(image).tobytes())
    key = digest.hexdigest()
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    with tempfile.TemporaryDirectory(prefix="robust-style-int8-") as tmp:
        src, calib, out = Path(tmp, "model.onnx"), Path(tmp, "calib.npz"), Path(tmp, "int8.xml")
        src.write_bytes(model)
        np.savez(calib, *calibration)
        proc = subprocess.run([sys.executable, "-m", __name__, str(src), str(calib), str(out)],
                              capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
        if proc.returncode != 0 or not out.exists():
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            raise RuntimeError(f"NNCF quantisation failed: "
                               f"{first_line(lines[-1]) if lines else f'exit {proc.returncode}'}")
        result = (out.read_text(encoding="utf-8"), out.with_suffix(".bin").read_bytes())
    with _LOCK:
        if len(_CACHE) >= 16:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = result
    return result


def _main(argv: list[str]) -> int:
    sys.modules["torch"] = None  # type: ignore[assignment]  # see the module docstring
    import logging

    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    src, calib, out = argv
    with np.load(calib) as data:  # allow_pickle stays False
        images = [data[k] for k in sorted(data.files, key=lambda k: int(k.split("_")[1]))]
    net = ov.Core().read_model(src)
    q = nncf.quantize(net, nncf.Dataset(images), subset_size=len(images),
                      fast_bias_correction=True)
    ov.save_model(q, out, compress_to_fp16=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
