"""One loaded style (:class:`StyleModel`) and how a file becomes one (:func:`load_style`).

Each file is loaded through :class:`~robust_style.server.engines.EngineSelector`: ONNX
Runtime (providers by probing) or OpenVINO, at the precision the config and the hardware
allow, warmed up and checked by the accuracy gate before it serves. The same loading, with
no server, is :func:`load_style_file`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robust_style.contract import StyleMetadata, parse_metadata, valid_style_name
from robust_style.server.engines import Engine, EngineConfig, EngineSelector
from robust_style.server.statistics import InferenceStatistics

__all__ = ["StyleModel", "load_style", "load_style_file"]


@dataclass(frozen=True, eq=False)
class StyleModel:
    """One loaded, warmed-up style. Immutable; hot reload replaces the whole object."""

    name: str
    version: str
    file: str
    sha256: str
    metadata: StyleMetadata
    engine: Engine
    input_name: str
    output_name: str
    #: Why this engine/precision (fallbacks and their figures, the accuracy gate's PSNR).
    engine_note: str = ""
    #: PSNR of the engine vs fp32 ONNX Runtime on the warm-up image (inf = identical).
    gate_psnr_db: float = math.inf
    #: Triton-style inference statistics of this version (``ModelStatistics``).
    stats: InferenceStatistics = field(default_factory=InferenceStatistics)

    @property
    def providers(self) -> tuple[str, ...]:
        """ONNX Runtime execution providers, or the OpenVINO device."""
        return self.engine.devices

    @property
    def engine_name(self) -> str:
        return self.engine.name

    @property
    def precision(self) -> str:
        return self.engine.precision

    def engine_info(self) -> dict[str, str]:
        """Engine facts as strings (for KServe model config ``parameters``, logs, metrics)."""
        return {"engine": self.engine.name, "precision": self.engine.precision,
                "devices": ", ".join(self.engine.devices), "engine_note": self.engine_note}

    def describe(self) -> dict[str, Any]:
        """What the style APIs say about it (gRPC ``ListStyles``, HTTP ``GET /v1/styles``)."""
        return {"name": self.name, "version": self.version, "ready": True, "file": self.file,
                "metadata": self.metadata.to_display(), "providers": list(self.providers),
                "sha256": self.sha256, "engine": self.engine_name, "precision": self.precision,
                "engine_note": self.engine_note}

    def run(self, batch: np.ndarray) -> np.ndarray:
        """``NxHxWx3 uint8`` -> the same, stylised (thread-safe)."""
        return self.engine.run(batch)


def load_style(data: bytes, selector: EngineSelector, file: str = "", sha256: str = "",
               warmup_side: int = 128, default_name: str = "style") -> StyleModel:
    """Load model bytes through ``selector``: engine choice, warm-up, accuracy gate, metadata.

    Raises ``ValueError`` (or the runtime's error) for a file that is not a valid style.
    """
    sha = sha256 or hashlib.sha256(data).hexdigest()
    loaded = selector.load(data, warmup_side, label=file or default_name)
    meta = parse_metadata(loaded.metadata, default_name=default_name)
    name = meta.name or default_name
    if not valid_style_name(name):
        raise ValueError(f"invalid style name {name!r} (use letters, digits, '_', '.', '-'; "
                         "starting with a letter or digit)")
    return StyleModel(name=name, version="1", file=file, sha256=sha, metadata=meta,
                      engine=loaded.engine, input_name=loaded.input_name,
                      output_name=loaded.output_name, engine_note=loaded.note,
                      gate_psnr_db=loaded.gate_psnr_db)


def load_style_file(path: Path, config: EngineConfig | None = None,
                    warmup_side: int = 128) -> StyleModel:
    """One style model file, no server: what ``serve`` would load, with the same engines."""
    path = Path(path)
    return load_style(path.read_bytes(), EngineSelector(config), file=path.name,
                      warmup_side=warmup_side, default_name=path.stem)
