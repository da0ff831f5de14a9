"""A Triton Inference Server model repository entry for an exported style model.

Layout (Triton docs, "Model Repository"): ``DIR/NAME/config.pbtxt`` and
``DIR/NAME/1/model.onnx``. The config is Triton's ``ModelConfig`` built by
:func:`robust_style.triton_config.model_config`, the same function the server answers
KServe ``ModelConfig`` with: platform ``onnxruntime_onnx``, ``max_batch_size > 0`` so the
batch axis is implicit and ``dims`` are the per-image ``[-1, -1, 3]`` (variable height and
width), ``dynamic_batching``, and the model file's sha256 in ``parameters``. Triton
batches only requests of the same shape, which for style transfer means same-sized images
(video frames, a resized photo set).

The entry appears atomically: it is assembled in a hidden temp folder inside ``DIR`` and
renamed into place; with ``force`` an existing entry is swapped out the same way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from robust_style.triton_config import (
    DEFAULT_MAX_BATCH,
    DEFAULT_QUEUE_DELAY_US,
    config_pbtxt,
    model_config,
)

__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_QUEUE_DELAY_US", "triton_config", "write_triton_entry"]


def triton_config(name: str, max_batch_size: int = DEFAULT_MAX_BATCH,
                  max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
                  description: str = "", sha256: str = "") -> str:
    """The ``config.pbtxt`` text: :func:`robust_style.triton_config.model_config`, the
    function the server's KServe ``ModelConfig`` answer is built with."""
    params = {"sha256": sha256} if sha256 else None
    return config_pbtxt(model_config(name, max_batch_size=max_batch_size,
                                     max_queue_delay_us=max_queue_delay_us,
                                     parameters=params), description)


def write_triton_entry(repo: str | Path, name: str, model_bytes: bytes, *,
                       max_batch_size: int = DEFAULT_MAX_BATCH,
                       max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
                       description: str = "", force: bool = False) -> Path:
    """Write ``repo/name/{config.pbtxt,1/model.onnx}`` atomically; returns ``repo/name``."""
    from robust_style.errors import UserError

    root = Path(repo)
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    if final.exists() and not force:
        raise UserError(f"{final} already exists; pass --force to replace it")
    config = triton_config(name, max_batch_size, max_queue_delay_us, description,
                           sha256=hashlib.sha256(model_bytes).hexdigest())
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    old: Path | None = None
    try:
        (staging / "1").mkdir()
        for rel, data in (("1/model.onnx", model_bytes), ("config.pbtxt", config.encode())):
            with (staging / rel).open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(staging, 0o755)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".old", dir=root))
            os.rmdir(old)
            os.replace(final, old)
        os.replace(staging, final)
    except BaseException:
        if old is not None and old.exists() and not final.exists():
            os.replace(old, final)
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)
    return final
