"""Stylise on this machine with the server's own code, no server: ``stylize --model``.

:class:`LocalStylizer` loads a style file (or every style file of a folder) through
:class:`~robust_style.server.registry.ModelRegistry`, the registry ``robust-style serve``
uses: the same engine choice (ONNX Runtime or OpenVINO, precision, accuracy gate), warm-up
and style naming. Images go through the same :class:`~robust_style.server.dataplane.DataPlane`
as a ``Stylize`` request (decoding, batcher, post-processing, encoding, statistics). It is
a :class:`~robust_style.server.client.StylizeBackend`, as the client is, so the CLI treats
a local run and a server alike (``pytorch/examples``' ``neural_style.py eval`` is the local habit).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from robust_style.contract import MAX_PIXELS
from robust_style.errors import UserError
from robust_style.server.batching import BatchConfig
from robust_style.server.client import StyleInfo, StylizeBackend, StylizeResult, read_image
from robust_style.server.dataplane import STREAM_WINDOW, DataPlane, ImageOptions, Limits, Pending
from robust_style.server.engines import EngineConfig
from robust_style.server.memory import available_memory
from robust_style.server.registry import LoadError, ModelRegistry, RegistryConfig

__all__ = ["LocalStylizer"]

log = logging.getLogger(__name__)

#: The data plane's name of this front door (:attr:`DataPlane.served`).
DOOR = "local"


class LocalStylizer(StylizeBackend):
    """Style models of ``path`` (a ``.onnx`` file or a folder of them), run in-process.

    A :class:`~robust_style.server.client.StylizeBackend`, as :class:`StyleClient` is.
    ``memory_budget`` (bytes; 0 = what the machine has free, -1 = none): a photo too large
    for it runs tiled, with the same output (:mod:`robust_style.server.memory`).
    """

    where = "--model"

    def __init__(self, path: Path, engine: EngineConfig | None = None,
                 max_pixels: int = MAX_PIXELS, warmup_side: int = 128,
                 memory_budget: int = 0) -> None:
        path = Path(path).expanduser()
        folder = path if path.is_dir() else path.parent
        if not path.exists():
            raise UserError(f"no such model file or folder: {path}")
        if path.is_file() and path.suffix.lower() != ".onnx":
            raise UserError(f"{path} is not an ONNX style model (.onnx)")
        config = RegistryConfig(models_dir=folder, engine=engine or EngineConfig(),
                                batch=BatchConfig(max_batch=1), poll_seconds=0.0,
                                warmup_side=warmup_side,
                                memory_budget=memory_budget or available_memory())
        self.max_pixels = max_pixels
        self.registry = ModelRegistry(config)
        self.plane = DataPlane(self.registry, Limits(max_pixels=max_pixels))
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
        self.plane.lookup(style)  # an unknown style before an unreadable file
        data = read_image(image)
        options = ImageOptions(strength=strength, preserve_color=preserve_color,
                               max_side=max_side, format="jpeg" if format == "jpeg" else "png",
                               quality=quality)
        out = self.plane.finish(self.plane.submit_image(bytes(data), style, options, DOOR))
        t = out.timing
        timing = {"decode": t.decode_ms, "queue": t.queue_ms, "inference": t.inference_ms,
                  "encode": t.encode_ms, "total": t.total_ms}
        return StylizeResult(out.data, out.mime_type, out.pixels.shape[1], out.pixels.shape[0],
                             out.model.name, out.model.version, timing)

    def stylize_frames(self, frames: Iterable[np.ndarray], style: str, *,
                       strength: float | None = None, preserve_color: bool = False,
                       max_side: int = 0, timeout: float | None = None) -> Iterator[np.ndarray]:
        """Frames in, stylised frames out, in order: the client's ``stylize_frames`` locally
        (``timeout`` is accepted for the same signature; a local run has no deadline).

        Up to :data:`STREAM_WINDOW` frames are queued in the batcher ahead of the one
        yielded, as the server does for a stream: while the caller encodes one frame and
        decodes the next, the engine is already running the frames after it."""
        self.plane.lookup(style)
        options = ImageOptions(strength=strength, preserve_color=preserve_color,
                               max_side=max_side)
        window: collections.deque[Pending] = collections.deque()
        for frame in frames:
            window.append(self.plane.submit_pixels(frame, style, options, DOOR))
            if len(window) >= STREAM_WINDOW:
                yield self.plane.finish(window.popleft(), encode=False).pixels
        while window:
            yield self.plane.finish(window.popleft(), encode=False).pixels

    def describe(self) -> str:
        """One line per style: name, engine and precision (for the log)."""
        return "; ".join(f"{m.name} ({m.engine_name} {m.precision})"
                         for m in self.registry.styles())

