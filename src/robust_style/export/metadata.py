"""The metadata an exported file carries, built from a trained style model.

:class:`~robust_style.contract.StyleMetadata` holds the keys every server reads. Its
``created`` is the **export** time (when this file, with its tensor convention and
precision, came to be) and ``package_version`` the exporting package's version; the
training side of the story goes into extra ``robust_style.*`` keys that
:func:`~robust_style.contract.parse_metadata` ignores and people can read with any ONNX
tool (:data:`EXTRA_KEYS`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robust_style import __version__
from robust_style.contract import NAME_PATTERN, StyleMetadata
from robust_style.errors import UserError
from robust_style.fileio import sha256_file
from robust_style.transformer_net.arch import TransformerNetConfig, arch_name

__all__ = ["EXTRA_KEYS", "NAME_PATTERN", "build_metadata", "check_name", "default_name"]

#: Extra keys (after the ``robust_style.`` prefix) written next to the contract's.
EXTRA_KEYS = ("trained_at", "trained_with", "backbone_weights", "style_image", "source_sha256",
              "opset", "net_config")


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise UserError(f"bad style name {name!r}: use letters, digits, '_', '.', '-' "
                        "(starting with a letter or digit, at most 128 characters)")
    return name


def default_name(meta: Mapping[str, Any], source: Path | None) -> str:
    """The training run's style name, made path-safe (``starry night`` -> ``starry-night``)."""
    raw = str(meta.get("name") or (source.parent.name if source and source.name ==
                                   "style_model.pt" else source.stem if source else "style"))
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-._") or "style"
    return name[:128]


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


def build_metadata(meta: Mapping[str, Any], *, name: str, precision: str, opset: int,
                   net_config: Mapping[str, Any], source: Path | None = None,
                   description: str = "", created: str | None = None,
                   ) -> tuple[StyleMetadata, dict[str, str]]:
    """``(StyleMetadata, extra props)`` for a style model's ``meta`` dict.

    ``meta`` is :attr:`robust_style.transformer_net.TrainedStyle.meta` (what training
    recorded). Paths from the training machine are reduced to file names.
    """
    steps_raw = meta.get("steps", 0)
    try:
        steps = int(steps_raw or 0)
    except (TypeError, ValueError):
        steps = 0
    config = meta.get("config") or {}
    if not isinstance(config, Mapping):
        config = {"value": str(config)}
    style_image = Path(str(meta.get("style_image") or "")).name
    backbone = str(meta.get("backbone") or "")
    if not description:
        parts = [f"style {name!r}"]
        if style_image:
            parts.append(f"from {style_image}")
        if backbone:
            parts.append(f"trained with the {backbone} loss network")
        if steps:
            parts.append(f"for {steps} steps")
        description = " ".join(parts) + f" ({precision})"
    md = StyleMetadata(
        name=name,
        backbone=backbone,
        backbone_sha256=str(meta.get("backbone_sha256") or ""),
        style_image_sha256=str(meta.get("style_image_sha256") or ""),
        steps=steps,
        config=dict(config),
        package_version=__version__,
        created=created or _utc_now(),
        precision=precision,
        description=description,
        # The preset's name (docs/realtime.md), or "custom".
        arch=arch_name(TransformerNetConfig.from_dict(dict(net_config))),
    )
    extra = {
        "trained_at": str(meta.get("created") or ""),
        "trained_with": str(meta.get("package_version") or ""),
        "backbone_weights": Path(str(meta.get("backbone_weights") or "")).name,
        "style_image": style_image,
        "source_sha256": sha256_file(source) if source and source.is_file() else "",
        "opset": str(opset),
        "net_config": json.dumps(dict(net_config), sort_keys=True),
    }
    return md, {f"robust_style.{k}": v for k, v in extra.items()}
