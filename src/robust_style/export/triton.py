"""A Triton Inference Server model repository entry for an exported style model.

Layout (Triton docs, "Model Repository"): ``DIR/NAME/config.pbtxt`` and
``DIR/NAME/1/model.onnx``. The config follows Triton's ``ModelConfig`` protobuf
(``model_config.proto``): platform ``onnxruntime_onnx``, ``max_batch_size > 0`` so the
batch axis is implicit and ``dims`` are the per-image ``[-1, -1, 3]`` (variable height and
width), and ``dynamic_batching``. Triton batches only requests of the same shape, which
for style transfer means same-sized images (video frames, a resized photo set).

The entry appears atomically: it is assembled in a hidden temp folder inside ``DIR`` and
renamed into place; with ``force`` an existing entry is swapped out the same way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from robust_style import __version__
from robust_style.contract import INPUT_NAME, OUTPUT_NAME

__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_QUEUE_DELAY_US", "triton_config", "write_triton_entry"]

DEFAULT_MAX_BATCH = 8
DEFAULT_QUEUE_DELAY_US = 2000


def triton_config(name: str, max_batch_size: int = DEFAULT_MAX_BATCH,
                  max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
                  description: str = "") -> str:
    """The ``config.pbtxt`` text (protobuf text format of Triton's ``ModelConfig``)."""
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be >= 1 (dynamic batching needs a batch axis)")
    note = "".join(f"# {line}\n" for line in description.splitlines() if line.strip())
    return (
        f"# Written by robust-style {__version__} (robust-style export --triton-repo).\n"
        f"{note}"
        "# Tensors: uint8 NHWC RGB in and out, same height and width; the batch axis is\n"
        "# implicit (max_batch_size > 0).\n"
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {max_batch_size}\n"
        "input [\n"
        "  {\n"
        f'    name: "{INPUT_NAME}"\n'
        "    data_type: TYPE_UINT8\n"
        "    dims: [ -1, -1, 3 ]\n"
        "  }\n"
        "]\n"
        "output [\n"
        "  {\n"
        f'    name: "{OUTPUT_NAME}"\n'
        "    data_type: TYPE_UINT8\n"
        "    dims: [ -1, -1, 3 ]\n"
        "  }\n"
        "]\n"
        "dynamic_batching {\n"
        f"  max_queue_delay_microseconds: {max_queue_delay_us}\n"
        "}\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
    )


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
    config = triton_config(name, max_batch_size, max_queue_delay_us, description)
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
