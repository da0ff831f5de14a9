"""ONNX (and Triton model repository) export of style networks, and its verification.

Submodules: :mod:`~robust_style.export.onnx_export` (core export and uint8 wrapping),
:mod:`~robust_style.export.fp16`, :mod:`~robust_style.export.verify`,
:mod:`~robust_style.export.metadata`, :mod:`~robust_style.export.triton` (torch-free) and
:mod:`~robust_style.export.pipeline` (``robust-style export``). Names are imported lazily so
``import robust_style.export.triton`` does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ExportOptions",
    "ExportResult",
    "ExportVerificationError",
    "ServingWrapper",
    "VerificationReport",
    "export_onnx",
    "export_style_model",
    "verify_onnx",
    "write_triton_entry",
]

_WHERE = {
    "ExportOptions": "pipeline",
    "ExportResult": "pipeline",
    "ExportVerificationError": "pipeline",
    "export_style_model": "pipeline",
    "ServingWrapper": "onnx_export",
    "export_onnx": "onnx_export",
    "VerificationReport": "verify",
    "verify_onnx": "verify",
    "write_triton_entry": "triton",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"robust_style.export.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'robust_style.export' has no attribute {name!r}")
