"""Style models to evaluate: exported ONNX files, training runs, style models, checkpoints.

Every kind becomes a :class:`Stylizer`: ``uint8 HxWx3 RGB -> uint8 HxWx3 RGB`` of the same
size, the model contract of :mod:`robust_style.contract`. ONNX files run with ONNX Runtime
on the CPU (as ``robust-style serve`` runs them by default); runs and checkpoints run the
PyTorch network and round its [0, 1] output to 8 bits, exactly what export bakes into the
graph, so both kinds are judged on the same kind of image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robust_style.errors import UserError, first_line

__all__ = ["Stylizer", "load_stylizer", "training_photos"]

log = logging.getLogger(__name__)


@dataclass
class Stylizer:
    """A loaded style model.

    Attributes:
        label: unique name in tables and grids (the style name, made unique).
        source: the file or run folder it came from.
        kind: ``"onnx"`` or ``"torch"``.
        meta: what the model says about itself (backbone, steps, training config, ...).
    """

    label: str
    source: Path
    kind: str
    meta: dict[str, Any]
    _run: Any = None

    def __call__(self, photo: np.ndarray) -> np.ndarray:
        """Stylise one ``HxWx3 uint8`` RGB photo."""
        out = self._run(np.ascontiguousarray(photo[None]))
        return np.asarray(out)[0]


def _onnx(path: Path) -> Stylizer:
    import onnxruntime as ort

    from robust_style.contract import parse_metadata

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = first_line(exc)
        raise UserError(f"cannot load style model {path}: not a readable ONNX file ({first})") \
            from None
    inputs, outputs = sess.get_inputs(), sess.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1 or inputs[0].type != "tensor(uint8)":
        raise UserError(f"{path} does not follow the style-model contract (one uint8 NHWC "
                        "input, one output); was it made by `robust-style export`?")
    meta_props = sess.get_modelmeta().custom_metadata_map
    meta = parse_metadata(meta_props, default_name=path.stem)
    in_name, out_name = inputs[0].name, outputs[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        try:
            return sess.run([out_name], {in_name: batch})[0]
        except Exception as exc:
            raise UserError(f"{path} failed on a {batch.shape[1]}x{batch.shape[2]} photo: "
                            f"{first_line(exc)}") from None

    info = {"name": meta.name, "backbone": meta.backbone, "steps": meta.steps,
            "config": dict(meta.config)}
    return Stylizer(meta.name, path, "onnx", info, run)


def _torch(path: Path, trust: bool) -> Stylizer:
    import torch

    from robust_style.transformer_net.artifact import load_style_model

    model = load_style_model(path, trust=trust)
    net = model.net.eval()

    def run(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.array(batch)).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            y = net(x)
        return (y.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    return Stylizer(model.name, model.source or path, "torch", dict(model.meta), run)


def load_stylizer(path: str | Path, *, trust: bool = False) -> Stylizer:
    """An ``.onnx`` file, a run folder, a ``style_model.pt`` or a training checkpoint.

    Raises:
        UserError: missing, unreadable, or not a style model (one line).
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"style model not found: {p}")
    if p.is_file() and p.suffix.lower() == ".onnx":
        return _onnx(p)
    if p.is_file() and p.stat().st_size == 0:
        raise UserError(f"cannot load style model {p}: the file is empty")
    return _torch(p, trust)


def training_photos(stylizer: Stylizer) -> Path | None:
    """The photo folder a run/checkpoint was trained on, if its metadata says."""
    cfg = stylizer.meta.get("config") or {}
    content = cfg.get("content") if isinstance(cfg, dict) else None
    return Path(content).resolve() if content else None
