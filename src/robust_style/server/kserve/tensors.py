"""KServe v2 tensors of a style model, for every transport (gRPC and HTTP/REST).

One input (``UINT8``, ``[N, H, W, 3]``) and one output; the checks and the conversion of
raw bytes or a list of values into the batch the data plane runs. The front doors only
unpack their own message format and call :func:`batch_of`; errors are
:class:`~robust_style.server.errors.InvalidRequest` (gRPC ``INVALID_ARGUMENT``, HTTP 400).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from robust_style.server.dataplane import DataPlane
from robust_style.server.errors import InvalidRequest
from robust_style.server.registry import StyleModel

__all__ = ["batch_of", "check_outputs", "DATATYPE", "SHAPE"]

DATATYPE = "UINT8"
#: The metadata shape of the input and the output (NHWC RGB, any batch and size).
SHAPE = (-1, -1, -1, 3)


def batch_of(plane: DataPlane, model: StyleModel, inputs: int, name: str, datatype: str,
             shape: Sequence[int], raw: bytes | memoryview | None = None,
             values: Any = None) -> np.ndarray:
    """The ``NxHxWx3 uint8`` batch of a request with ``inputs`` inputs, the first being
    ``name``/``datatype``/``shape`` with its data as ``raw`` bytes or ``values``."""
    if inputs != 1:
        raise InvalidRequest(f"model {model.name!r} takes exactly one input "
                             f"({model.input_name!r}), got {inputs}")
    if name != model.input_name:
        raise InvalidRequest(f"unknown input {name!r}; model {model.name!r} takes "
                             f"{model.input_name!r}")
    if datatype != DATATYPE:
        raise InvalidRequest(f"input {name!r} must be UINT8 (RGB 0..255), got "
                             f"{datatype or 'no datatype'}")
    try:
        shape = [int(s) for s in shape]
    except (TypeError, ValueError):
        raise InvalidRequest(f"input {name!r}: shape must be a list of integers, got "
                             f"{shape!r}") from None
    if len(shape) != 4 or shape[3] != 3 or min(shape) <= 0:
        raise InvalidRequest(f"input {name!r} must have shape [N, H, W, 3] (NHWC RGB, all > 0), "
                             f"got {shape}")
    n, h, w, _ = shape
    plane.check_batch(n, h, w)
    expected = n * h * w * 3
    if raw is not None:
        if len(raw) != expected:
            raise InvalidRequest(f"input {name!r} of shape {shape} needs {expected} bytes, got "
                                 f"{len(raw)}")
        return np.frombuffer(raw, dtype=np.uint8).reshape(shape)
    try:
        arr = np.asarray(values if values is not None else [], dtype=np.int64).ravel()
    except (TypeError, ValueError, OverflowError):
        raise InvalidRequest(f"input {name!r}: UINT8 data must be integers 0..255") from None
    if arr.size != expected:
        raise InvalidRequest(f"input {name!r} of shape {shape} needs {expected} values, got "
                             f"{arr.size}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise InvalidRequest("UINT8 values must be in 0..255")
    return arr.astype(np.uint8).reshape(shape)


def check_outputs(model: StyleModel, names: Sequence[str]) -> None:
    """Every requested output must be the model's one output."""
    for out in names:
        if out != model.output_name:
            raise InvalidRequest(f"unknown output {out!r}; model {model.name!r} has output "
                                 f"{model.output_name!r}")
