"""The tensor and metadata contract of an exported style model.

This module is the single source of truth shared by the exporter (which writes ONNX
files), the server (which reads them) and the clients. It is torch-free.

Tensor convention
-----------------
One input and one output, both ``uint8``, layout ``NHWC`` (batch, height, width, RGB),
with dynamic batch, height and width. Scaling to and from [0, 1] and the NHWC<->NCHW
transposes happen inside the graph. This is the cheapest convention for both ends: a
decoded image (Pillow, OpenCV, a video frame) already *is* an ``HxWx3 uint8`` array, so
clients send it without conversion, and raw tensors are 4x smaller on the wire than
float32. The output has exactly the input's height and width.

Metadata
--------
Every exported file carries ``metadata_props`` under the keys below (all strings;
``config`` is JSON). :func:`parse_metadata` turns them into a :class:`StyleMetadata`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FORMAT",
    "INPUT_NAME",
    "MAX_PIXELS",
    "MIN_SIDE",
    "OUTPUT_NAME",
    "TENSOR_CONVENTION",
    "META_KEYS",
    "NAME_PATTERN",
    "parse_dims",
    "valid_style_name",
    "StyleMetadata",
    "parse_metadata",
]

#: Value of the ``robust_style.format`` metadata key; bump on incompatible changes.
FORMAT = "robust-style/style-model/v1"
INPUT_NAME = "image"
OUTPUT_NAME = "stylized"
#: Smallest height or width a style network accepts.
MIN_SIDE = 8
#: Default largest image (pixels) a server or client decodes (``--max-pixels``).
MAX_PIXELS = 40_000_000
TENSOR_CONVENTION = "uint8 NHWC RGB in [0,255] -> uint8 NHWC RGB, same H and W"

#: A style name: also a file name (clients write ``<input>.<style>.png``), a metrics label
#: and a URL segment, so no separators, no leading dot, bounded length.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def valid_style_name(name: str) -> bool:
    """True if ``name`` is a safe style name (:data:`NAME_PATTERN`, whole string)."""
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


_PREFIX = "robust_style."
#: Metadata keys, without their ``robust_style.`` prefix.
META_KEYS = (
    "format",
    "name",
    "backbone",
    "backbone_sha256",
    "style_image_sha256",
    "steps",
    "config",
    "package_version",
    "created",
    "tensor_convention",
    "precision",
    "description",
    "arch",
)


@dataclass(frozen=True)
class StyleMetadata:
    """What an exported style model says about itself."""

    name: str
    format: str = FORMAT
    backbone: str = ""
    backbone_sha256: str = ""
    style_image_sha256: str = ""
    steps: int = 0
    config: Mapping[str, Any] = field(default_factory=dict)
    package_version: str = ""
    created: str = ""
    tensor_convention: str = TENSOR_CONVENTION
    precision: str = "fp32"
    description: str = ""
    #: The network's architecture preset (``johnson``, ``quarter``, ...; docs/realtime.md);
    #: empty in files made before presets existed (those are ``johnson``).
    arch: str = ""

    def to_props(self) -> dict[str, str]:
        """Metadata as ONNX ``metadata_props`` (prefixed string keys and values)."""
        out: dict[str, str] = {}
        for key in META_KEYS:
            value = getattr(self, key)
            if key == "config":
                value = json.dumps(dict(value), sort_keys=True, default=str)
            out[_PREFIX + key] = str(value)
        return out

    def to_display(self) -> dict[str, str]:
        """Flat, unprefixed string view (for ``ListStyles`` and KServe metadata)."""
        return {k[len(_PREFIX):]: v for k, v in self.to_props().items()}


def parse_metadata(props: Mapping[str, str], default_name: str = "") -> StyleMetadata:
    """Build :class:`StyleMetadata` from ONNX ``metadata_props``.

    Unknown keys are ignored; missing keys take defaults, so any ONNX file following the
    tensor convention can be served. ``default_name`` (usually the file stem) is used when
    the file names no style.
    """
    get = {k[len(_PREFIX):]: v for k, v in props.items() if k.startswith(_PREFIX)}
    try:
        config = json.loads(get.get("config", "{}") or "{}")
    except json.JSONDecodeError:
        config = {}
    try:
        steps = int(get.get("steps", "0") or 0)
    except ValueError:
        steps = 0
    return StyleMetadata(
        name=get.get("name") or default_name,
        format=get.get("format", ""),
        backbone=get.get("backbone", ""),
        backbone_sha256=get.get("backbone_sha256", ""),
        style_image_sha256=get.get("style_image_sha256", ""),
        steps=steps,
        config=config if isinstance(config, dict) else {},
        package_version=get.get("package_version", ""),
        created=get.get("created", ""),
        tensor_convention=get.get("tensor_convention", TENSOR_CONVENTION),
        precision=get.get("precision", "fp32"),
        description=get.get("description", ""),
        arch=get.get("arch", ""),
    )


def parse_dims(text: str, count: int | None = None) -> tuple[int, ...]:
    """The one parser of ``"AxB"``-style sizes: ``"720x1280"`` -> ``(720, 1280)``.

    Case-insensitive ``x`` between positive integers; with ``count``, exactly that many.
    Raises :class:`ValueError` (callers turn it into a message naming their option).
    """
    parts = text.strip().lower().split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{text!r} is not a size like 720x1280") from None
    if (count is not None and len(dims) != count) or min(dims) < 1:
        want = "x".join(["N"] * count) if count else "AxB..."
        raise ValueError(f"{text!r} is not a size {want} of positive whole numbers")
    return dims
