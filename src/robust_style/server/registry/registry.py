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
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from robust_style.errors import first_line
from robust_style.server.batching import BatchConfig, Batcher
from robust_style.server.engines import EngineConfig, EngineSelector
from robust_style.server.errors import StyleNotFound
from robust_style.server.memory import BudgetedEngine, MemoryBudget, default_budget
from robust_style.server.metrics import Metrics
from robust_style.server.registry.repository import LoadError, ModelState, list_models
from robust_style.server.registry.style_model import StyleModel, load_style

__all__ = ["RegistryConfig", "ModelRegistry", "EVICTED"]

#: ``RepositoryIndex`` reason of a ready style whose engine the memory budget evicted.
EVICTED = "engine evicted from memory (least recently used); reloads on its next request"


def _leave_budget(model: StyleModel) -> None:
    """A replaced or removed style's engine no longer counts in the memory budget."""
    if isinstance(model.engine, BudgetedEngine):
        model.engine.close()

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistryConfig:
    models_dir: Path
    engine: EngineConfig = field(default_factory=EngineConfig)
    #: ``max_batch=0`` means automatic: 8 on a GPU, 1 (no batching) on a CPU.
    batch: BatchConfig = field(default_factory=lambda: BatchConfig(max_batch=0))
    poll_seconds: float = 2.0
    warmup_side: int = 128
    #: Memory budget of the process, bytes (:mod:`robust_style.server.memory`); 0 = the
    #: default (the machine's or the cgroup's memory less a margin); -1 = none (unbounded).
    memory_budget: int = 0


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


class ModelRegistry:
    """Styles by name, with their batchers; see the module docstring."""

    def __init__(self, config: RegistryConfig, metrics: Metrics | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.config, self.metrics, self._on_change = config, metrics or Metrics(), on_change
        self._styles: dict[str, StyleModel] = {}
        self._batchers: dict[str, Batcher] = {}
        self._files: dict[str, _FileState] = {}
        self._selector = EngineSelector(config.engine)
        self.memory: MemoryBudget | None = None
        if config.memory_budget >= 0:
            self.memory = MemoryBudget(config.memory_budget or default_budget())
            log.info("%s", self.memory.describe())
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
    def providers_probed(self) -> bool:
        """Whether a model that loaded has fixed the execution providers (a corrupt file
        never does)."""
        return self._selector.probed

    def files_seen(self) -> set[str]:
        """The model files the last scan saw (loaded, failed or waiting)."""
        return set(self._files.copy())  # dict.copy is atomic while the scanner writes

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
        except Exception as exc:
            msg = first_line(exc, 300)
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
            if (old := self._styles.get(model.name)) is not None:
                _leave_budget(old)
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
            _leave_budget(model)
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
                           warmup_side=self.config.warmup_side, default_name=path.stem,
                           budget=self.memory)
        fallbacks, labels = self.metrics.trt_fallbacks, (("style", model.name),)
        model.engine.set_fallback_listener(lambda shape: fallbacks.inc(labels))
        return model

    # -- explicit model control (Triton's model repository) -------------------------------
    def _file_of(self, name: str, files: dict[str, Path]) -> str | None:
        """The file that serves (or would serve) style ``name``: by style name, then stem."""
        with self._lock:
            model = self._styles.get(name)
            if model is not None and model.file in files:
                return model.file
        for fname in files:
            state = self._files.get(fname)
            if state is not None and name in (state.style, state.waiting_for):
                return fname
        return f"{name}.onnx" if f"{name}.onnx" in files else None

    def load_file(self, fname: str) -> StyleModel:
        """Load (or reload) the models folder's file ``fname``; :class:`LoadError` if not."""
        with self._loading:
            files = self._listing()
            self._current = files
            if fname not in files:
                raise LoadError(f"no file {fname!r} in {self.config.models_dir}")
            state = self._files.get(fname)
            serving = state is not None and state.style is not None and \
                self.has(state.style) and self._styles[state.style].file == fname
            if state is not None and not serving:
                del self._files[fname]  # unloaded, failed or waiting: read it afresh
            changed = self._scan_file(fname, files[fname])
            state = self._files.get(fname)
            if state is None:
                raise LoadError(f"cannot read {fname} (missing or still being written)")
            if state.waiting_for:
                with self._lock:
                    other = self._styles.get(state.waiting_for)
                raise LoadError(f"style name {state.waiting_for!r} of {fname} is already served"
                                f" from {other.file if other else 'another file'}")
            with self._lock:
                model = self._styles.get(state.style) if state.style else None
            if state.error:
                still = (f"; still serving version {model.version}" if model is not None
                         else "")
                raise LoadError(f"cannot load {fname}: {state.error}{still}")
            assert model is not None
        if changed and self._on_change:
            self._on_change()
        return model

    def load(self, name: str) -> StyleModel:
        """Load or reload style ``name`` from its file; KeyError if no file has that name."""
        files = self._listing()
        fname = self._file_of(name, files)
        if fname is None:
            raise StyleNotFound(f"no model {name!r} in the models folder",
                                sorted({m.name for m in self.index()}))
        return self.load_file(fname)

    def unload(self, name: str) -> StyleModel:
        """Stop serving ``name``; its queued and running requests complete. KeyError if unknown."""
        with self._loading:
            with self._lock:
                model = self._styles.get(name)
                if model is None:
                    raise StyleNotFound(f"model {name!r} is not loaded",
                                        sorted(self._styles), label="loaded")
                state = self._files.get(model.file)
                if state is not None:
                    state.unloaded = True
            self._remove(name, model.file, why="unloaded")
        if self._on_change:
            self._on_change()
        return model

    def index(self, ready_only: bool = False) -> list[ModelState]:
        """Every model file of the folder with its state and reason (``RepositoryIndex``)."""
        out: list[ModelState] = []
        files = self._listing()
        with self._lock:
            for fname in files:
                state = self._files.get(fname)
                model = self._styles.get(state.style) if state and state.style else None
                if model is not None and model.file == fname:
                    reason = (f"a newer {fname} failed to load: {state.error}"
                              if state and state.error else "")
                    if not getattr(model.engine, "loaded", True):
                        reason = "; ".join(r for r in (reason, EVICTED) if r)
                    out.append(ModelState(model.name, model.version, "READY", reason, fname))
                    continue
                name = (state.style or state.waiting_for) if state else None
                if state is None:
                    reason = "not loaded yet"
                elif state.unloaded:
                    reason = "unloaded"
                elif state.waiting_for:
                    other = self._styles.get(state.waiting_for)
                    reason = (f"style name {state.waiting_for!r} is already served from "
                              f"{other.file if other else 'another file'}")
                else:
                    reason = state.error or "not loaded"
                # Triton keeps showing the version of a model that is not available
                version = str(self._versions[name]) if name in self._versions else ""
                out.append(ModelState(name or Path(fname).stem, version, "UNAVAILABLE", reason,
                                      fname))
        if ready_only:
            out = [m for m in out if m.state == "READY"]
        return sorted(out, key=lambda m: (m.name, m.file))

    def _listing(self) -> dict[str, Path]:
        return list_models(self.config.models_dir)

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
            except Exception:
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
