"""Explicit model control of the registry: Triton's load, unload and repository index.

Triton's ``RepositoryModelLoad`` loads (or reloads) a model from the repository by name,
``RepositoryModelUnload`` stops serving it and ``RepositoryIndex`` lists every model of the
repository with its state and the reason (Triton docs, "Model Management", explicit mode).
Here the repository is the models folder: :meth:`ModelRegistry.load` finds the file of
a style (by the style name it serves or would serve, else ``NAME.onnx``) and loads it
through the registry's own loading path (the one the watcher uses), so a load
by request and a load by the watcher are the same thing. An unloaded file is left alone by
the watcher until it is loaded again; requests already queued for the style complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LoadError", "ModelState", "list_models"]

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


def list_models(root: Path) -> dict[str, Path]:
    """The model files of the folder ``root`` by file name (``*.onnx``, no hidden files)."""
    try:
        return {p.name: p for p in sorted(root.glob("*.onnx"))
                if not p.name.startswith(".") and p.is_file()}
    except OSError as exc:
        log.error("cannot list %s: %s", root, exc)
        return {}
