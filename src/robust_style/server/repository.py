"""Explicit model control of the registry: Triton's load, unload and repository index.

Triton's ``RepositoryModelLoad`` loads (or reloads) a model from the repository by name,
``RepositoryModelUnload`` stops serving it and ``RepositoryIndex`` lists every model of the
repository with its state and the reason (Triton docs, "Model Management", explicit mode).
Here the repository is the models folder: :meth:`RepositoryControl.load` finds the file of
a style (by the style name it serves or would serve, else ``NAME.onnx``) and loads it
through the registry's own loading path (:meth:`ModelRegistry._scan_file`), so a load
by request and a load by the watcher are the same thing. An unloaded file is left alone by
the watcher until it is loaded again; requests already queued for the style complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from robust_style.server.errors import StyleNotFound

if TYPE_CHECKING:
    from robust_style.server.models import StyleModel

__all__ = ["LoadError", "ModelState", "RepositoryControl"]

log = logging.getLogger(__name__)


class LoadError(RuntimeError):
    """An explicit load failed; the message says why. Other styles keep serving."""


@dataclass(frozen=True)
class ModelState:
    """One entry of :meth:`ModelRegistry.index` (Triton's ``RepositoryIndex``)."""

    name: str
    version: str
    state: str  # "READY" or "UNAVAILABLE"
    reason: str
    file: str


class RepositoryControl:
    """Mixin of :class:`~robust_style.server.models.ModelRegistry` (uses its state)."""

    def _listing(self) -> dict[str, Path]:
        root = self.config.models_dir
        try:
            return {p.name: p for p in sorted(root.glob("*.onnx"))
                    if not p.name.startswith(".") and p.is_file()}
        except OSError as exc:
            log.error("cannot list %s: %s", root, exc)
            return {}

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

