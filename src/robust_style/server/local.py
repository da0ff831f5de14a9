"""Stylise on this machine with the server's own code, no server: ``stylize --model``.

:class:`LocalStylizer` loads a style file (or every style file of a folder) through
:class:`~robust_style.server.models.ModelRegistry`, the registry ``robust-style serve``
uses: the same engine choice (ONNX Runtime or OpenVINO, precision, accuracy gate), warm-up
and style naming. Images go through the same decoder (:mod:`robust_style.imageio`), the
same post-processing and encoder (:mod:`robust_style.server.images`) as a ``Stylize``
request. It offers the client's ``list_styles``/``stylize`` so the CLI treats a local run
and a server alike (``pytorch/examples``' ``neural_style.py eval`` is the local habit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from robust_style.errors import UserError
from robust_style.imageio import decode_image, fit_max_side
from robust_style.server import images
from robust_style.server.batching import BatchConfig
from robust_style.server.client import StyleInfo, StylizeResult
from robust_style.server.engines import EngineConfig
from robust_style.server.models import ModelRegistry, RegistryConfig, StyleModel
from robust_style.server.repository import LoadError

__all__ = ["LocalStylizer"]

log = logging.getLogger(__name__)


class LocalStylizer:
    """Style models of ``path`` (a ``.onnx`` file or a folder of them), run in-process."""

    def __init__(self, path: Path, engine: EngineConfig | None = None,
                 max_pixels: int = 40_000_000, warmup_side: int = 128) -> None:
        path = Path(path).expanduser()
        folder = path if path.is_dir() else path.parent
        if not path.exists():
            raise UserError(f"no such model file or folder: {path}")
        if path.is_file() and path.suffix.lower() != ".onnx":
            raise UserError(f"{path} is not an ONNX style model (.onnx)")
        config = RegistryConfig(models_dir=folder, engine=engine or EngineConfig(),
                                batch=BatchConfig(max_batch=1), poll_seconds=0.0,
                                warmup_side=warmup_side)
        self.max_pixels = max_pixels
        self.registry = ModelRegistry(config)
        try:
            if path.is_dir():
                self.registry.scan()
                if not self.registry.styles():
                    bad = [m for m in self.registry.index() if m.state != "READY"]
                    why = "; ".join(f"{m.file}: {m.reason}" for m in bad)
                    raise UserError(f"no loadable style model (*.onnx) in {path}"
                                    + (f" ({why})" if why else ""))
            else:
                self.registry.load_file(path.name)
        except LoadError as exc:
            self.close()
            raise UserError(str(exc)) from None
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> LocalStylizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.registry.stop()

    def list_styles(self) -> list[StyleInfo]:
        return [StyleInfo(m.name, m.version, True, m.file, tuple(m.providers),
                          m.metadata.to_display(), m.engine_name, m.precision, m.engine_note,
                          m.sha256) for m in self.registry.styles()]

    def stylize(self, image: bytes | str | Path, style: str, *, strength: float | None = None,
                preserve_color: bool = False, max_side: int = 0, format: str = "png",
                quality: int = 0) -> StylizeResult:
        """Stylise one encoded image (bytes or a file): what ``Stylize`` answers, locally."""
        start = time.monotonic()
        model, _ = self._model(style)
        try:
            data = image if isinstance(image, bytes | bytearray) else Path(image).read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read {image}: {exc.strerror or exc}") from None
        content = decode_image(bytes(data), self.max_pixels, max_side)
        decoded = time.monotonic()
        out = model.run(content[None])[0]
        inferred = time.monotonic()
        out = images.finish(content, out, luminance_only=preserve_color, strength=strength)
        enc = images.encode_image(out, "jpeg" if format == "jpeg" else "png", quality or 90)
        end = time.monotonic()
        timing = {"decode": (decoded - start) * 1000, "queue": 0.0,
                  "inference": (inferred - decoded) * 1000, "encode": (end - inferred) * 1000,
                  "total": (end - start) * 1000}
        return StylizeResult(enc.data, enc.mime_type, out.shape[1], out.shape[0], model.name,
                             model.version, timing)

    def stylize_frames(self, frames: Iterable[np.ndarray], style: str, *,
                       strength: float | None = None, preserve_color: bool = False,
                       max_side: int = 0, timeout: float | None = None) -> Iterator[np.ndarray]:
        """Frames in, stylised frames out, in order: the client's ``stylize_frames`` locally
        (``timeout`` is accepted for the same signature; a local run has no deadline)."""
        model, _ = self._model(style)
        for frame in frames:
            arr = np.asarray(frame)
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
                raise UserError(f"frames must be HxWx3 uint8 RGB arrays, got {arr.dtype} "
                                f"{arr.shape}")
            content = fit_max_side(arr, max_side)
            out = model.run(np.ascontiguousarray(content)[None])[0]
            yield images.finish(content, out, luminance_only=preserve_color, strength=strength)

    def _model(self, style: str) -> tuple[StyleModel, object]:
        try:
            return self.registry.get(style)
        except KeyError:
            names = ", ".join(m.name for m in self.registry.styles())
            raise UserError(f"unknown style {style!r}; available: {names}") from None

    def describe(self) -> str:
        """One line per style: name, engine and precision (for the log)."""
        return "; ".join(f"{m.name} ({m.engine_name} {m.precision})"
                         for m in self.registry.styles())

