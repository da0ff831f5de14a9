"""The model registry: one engine per style (:mod:`robust_style.server.engines`), hot reload.

Every ``*.onnx`` file in the models directory is a style (name from its
``robust_style.name`` metadata, else the file name). The registry polls the directory
every ``poll_seconds``: a new or changed file (size/mtime, then sha256 of the content) is
loaded into a new session, warmed up, and only then swapped in; requests already holding
the old :class:`StyleModel` finish on it. New and changed files are handled before removed
ones, so a rename (``mv a.onnx b.onnx``) or a new file taking over a deleted file's style
name swaps versions without a gap. A removed file removes its style. A file that fails to
load, or whose style name is invalid (:func:`robust_style.contract.valid_style_name`), is
logged and skipped (a broken replacement leaves the previous version serving) and is
retried only when it changes again. A file skipped because another file serves its style
name is retried as soon as that name is free again; if it served a style before it was
rewritten, it keeps serving that (previous) version until then, and deleting the file
removes it.

Each file is loaded through :class:`~robust_style.server.engines.EngineSelector`: ONNX
Runtime (providers by probing) or OpenVINO, at the precision the config and the hardware
allow, warmed up and checked by the accuracy gate before it serves. The same loading, with
no server, is :func:`load_style_file`.

Versions are numbered as Triton numbers them: the first load of a style is version ``"1"``
and every load of new content for it (a changed file, an explicit reload after an unload)
is the next number; the file's sha256 identifies the content (``ListStyles``, the KServe
model config's ``parameters``). Only the newest version is served.

Explicit model control (Triton's ``RepositoryModelLoad``/``RepositoryModelUnload``):
:meth:`ModelRegistry.load` loads (or reloads) a style from a file of the models folder by
name; :meth:`ModelRegistry.unload` removes a style, its queued and running requests still
complete on it, and the watcher leaves its file alone until it is loaded again.
:meth:`ModelRegistry.index` lists every file with its state (``READY`` or ``UNAVAILABLE``)
and the reason (the load error, "unloaded", ...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robust_style.contract import StyleMetadata, parse_metadata, valid_style_name
from robust_style.server.batching import BatchConfig, Batcher
from robust_style.server.engines import Engine, EngineConfig, EngineSelector, ProviderConfig
from robust_style.server.errors import StyleNotFound
from robust_style.server.metrics import Metrics
from robust_style.server.repository import LoadError, ModelState, RepositoryControl
from robust_style.server.statistics import InferenceStatistics

__all__ = ["EngineConfig", "ProviderConfig", "RegistryConfig", "StyleModel", "ModelRegistry",
           "ModelState", "LoadError", "load_style", "load_style_file"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistryConfig:
    models_dir: Path
    engine: EngineConfig = field(default_factory=EngineConfig)
    #: ``max_batch=0`` means automatic: 8 on a GPU, 1 (no batching) on a CPU.
    batch: BatchConfig = field(default_factory=lambda: BatchConfig(max_batch=0))
    poll_seconds: float = 2.0
    warmup_side: int = 128


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


@dataclass
class _FileState:
    signature: tuple[int, int]
    sha256: str
    style: str | None  # None: failed to load
    #: The style name this file would serve but another file already serves it.
    waiting_for: str | None = None
    #: Why the last load of this content failed ("" = it did not).
    error: str = ""
    #: Unloaded on request: scans leave the file alone until :meth:`ModelRegistry.load`.
    unloaded: bool = False


class ModelRegistry(RepositoryControl):
    """Styles by name, with their batchers; see the module docstring."""

    def __init__(self, config: RegistryConfig, metrics: Metrics | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.config, self.metrics, self._on_change = config, metrics or Metrics(), on_change
        self._styles: dict[str, StyleModel] = {}
        self._batchers: dict[str, Batcher] = {}
        self._files: dict[str, _FileState] = {}
        self._selector = EngineSelector(config.engine)
        self._current: dict[str, Path] = {}
        self._freed: set[str] = set()
        self._versions: dict[str, int] = {}  # style -> last version number given out
        self._lock = threading.RLock()
        #: Serialises everything that loads or removes styles (scans, load, unload).
        self._loading = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.scanned = threading.Event()

    # -- lookup ---------------------------------------------------------------------------
    def get(self, name: str) -> tuple[StyleModel, Batcher]:
        """The current model and batcher of ``name``; :class:`StyleNotFound` if unknown."""
        with self._lock:
            if name in self._styles:
                return self._styles[name], self._batchers[name]
            available = sorted(self._styles)
        raise StyleNotFound.style(name, available)

    def has(self, name: str) -> bool:
        """True if ``name`` is a loaded style."""
        with self._lock:
            return name in self._styles

    def styles(self) -> list[StyleModel]:
        with self._lock:
            return sorted(self._styles.values(), key=lambda m: m.name)

    @property
    def on_gpu(self) -> bool:
        return self._selector.on_gpu

    @property
    def batch_config(self) -> BatchConfig:
        b = self.config.batch
        if b.max_batch <= 0:
            b = dataclasses.replace(b, max_batch=8 if self.on_gpu else 1)
        return b

    # -- loading --------------------------------------------------------------------------
    def scan(self) -> bool:
        """One pass over the directory; returns True if the set of styles changed."""
        with self._loading:
            return self._scan()

    def _scan(self) -> bool:
        changed = False
        current = self._listing()
        self._current = current
        gone = sorted(set(self._files) - set(current))
        # Files waiting for the name of a style whose file is gone may take it over now,
        # before the removal, so the style never disappears in between.
        self._retry_waiting({s for f in gone if (s := self._files[f].style)})
        for fname, path in current.items():
            changed |= self._scan_file(fname, path)
        for fname in gone:
            state = self._files.pop(fname)
            if state.style is not None:
                changed |= self._remove(state.style, fname)
        while self._freed:  # names freed by removals or renames: let waiting files load
            freed, self._freed = self._freed, set()
            for fname in self._retry_waiting(freed):
                changed |= self._scan_file(fname, current[fname])
        self.scanned.set()
        if changed and self._on_change:
            self._on_change()
        return changed

    def _retry_waiting(self, names: set[str]) -> list[str]:
        """Make files skipped for one of ``names`` load on the next look.

        Their state is kept, only marked unseen: the style a file served before it was
        rewritten must still be replaced (or removed) when the new content loads.
        """
        files = sorted(f for f, st in self._files.items()
                       if st.waiting_for in names and f in self._current)
        for f in files:
            self._files[f] = _FileState((-1, -1), "", self._files[f].style)
        return files

    def _scan_file(self, fname: str, path: Path) -> bool:
        try:
            st = path.stat()
            sig = (st.st_mtime_ns, st.st_size)
            known = self._files.get(fname)
            if known and (known.signature == sig or known.unloaded):
                return False
            data = path.read_bytes()
            st2 = path.stat()
            if (st2.st_mtime_ns, st2.st_size) != sig or len(data) != st.st_size:
                log.info("%s is still being written; next poll", fname)
                return False
        except OSError as exc:
            log.warning("cannot read %s: %s", path, exc)
            return False
        sha = hashlib.sha256(data).hexdigest()
        if known and known.sha256 == sha:
            known.signature = sig
            return False
        try:
            model = self._load(fname, path, data, sha)
        except Exception as exc:  # noqa: BLE001 - a bad file must not disturb the others
            msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            log.error("skipping %s: cannot load it as a style model: %s", path, msg)
            self.metrics.reloads.inc((("style", path.stem), ("result", "failed")))
            keep = known.style if known else None
            self._files[fname] = _FileState(sig, sha, keep, error=msg)
            return False
        with self._lock:
            other = self._styles.get(model.name)
            if other is not None and other.file != fname and other.file in self._current:
                log.error("skipping %s: style name %r is already served from %s", fname,
                          model.name, other.file)
                keep = known.style if known else None  # the previous version serves on
                self._files[fname] = _FileState(sig, sha, keep, waiting_for=model.name)
                return False
            # (other.file gone from the directory: this file takes its style over)
            if known and known.style and known.style != model.name:
                self._remove(known.style, fname)
            self._versions[model.name] = number = self._versions.get(model.name, 0) + 1
            model = dataclasses.replace(model, version=str(number))
            self._styles[model.name] = model
            if model.name not in self._batchers:
                self._batchers[model.name] = Batcher(model.name, self.batch_config, self.metrics)
            self._files[fname] = _FileState(sig, sha, model.name)
            self.metrics.models.set((), len(self._styles))
        self.metrics.reloads.inc((("style", model.name), ("result", "ok")))
        self.metrics.set_engine(model.name, model.engine_name, model.precision)
        log.info("%s style %r version %s from %s: %s%s", "reloaded" if known else "loaded",
                 model.name, model.version, fname, model.engine.describe(),
                 f" [{model.engine_note}]" if model.engine_note else "")
        return True

    def _remove(self, style: str, fname: str, why: str = "deleted") -> bool:
        with self._lock:
            model = self._styles.get(style)
            if model is None or model.file != fname:
                return False
            del self._styles[style]
            batcher = self._batchers.pop(style)
            self.metrics.models.set((), len(self._styles))
        self.metrics.drop_engine(style)
        batcher.stop(wait=False, removed=True)  # queued requests still run on their model
        if why == "deleted":
            self._freed.add(style)
        self.metrics.reloads.inc((("style", style), ("result", "removed")))
        log.info("removed style %r (%s %s)", style, fname, why)
        return True

    def _load(self, fname: str, path: Path, data: bytes, sha: str) -> StyleModel:
        # The provider probe is kept only once a model has loaded with it: a corrupt first
        # file must not pin the server to CPU.
        model = load_style(data, self._selector, file=fname, sha256=sha,
                           warmup_side=self.config.warmup_side, default_name=path.stem)
        if hasattr(model.engine, "on_fallback"):  # TensorRT: sizes beyond every profile
            fallbacks, labels = self.metrics.trt_fallbacks, (("style", model.name),)
            model.engine.on_fallback = lambda shape: fallbacks.inc(labels)
        return model

    # -- watching -------------------------------------------------------------------------
    def start_watching(self) -> None:
        """Poll the directory every ``poll_seconds`` in a daemon thread (0 = never)."""
        if self.config.poll_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="model-watcher", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.scan()
            except Exception:  # noqa: BLE001 - the watcher must survive anything
                log.exception("model directory scan failed")

    def stop(self) -> None:
        """Stop watching and end the batchers (after what they have queued)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            batchers = list(self._batchers.values())
        for b in batchers:
            b.stop()
