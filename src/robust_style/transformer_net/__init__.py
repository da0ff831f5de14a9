"""The Johnson et al. (2016) feed-forward style network and its training.

The names below load on first use (PEP 562), so that torch-free submodules such as
:mod:`.arch` (the architecture presets the CLI lists in ``--help``) import without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robust_style.transformer_net.arch import TransformerNetConfig
    from robust_style.transformer_net.artifact import (
        TrainedStyle,
        atomic_torch_save,
        load_style_model,
        resolve_style_source,
        save_style_model,
    )
    from robust_style.transformer_net.model import TransformerNet

__all__ = [
    "TrainedStyle",
    "TransformerNet",
    "TransformerNetConfig",
    "atomic_torch_save",
    "load_style_model",
    "resolve_style_source",
    "save_style_model",
]

_HOME = {"TransformerNet": "model", "TransformerNetConfig": "arch", "TrainedStyle": "artifact",
         "atomic_torch_save": "artifact", "load_style_model": "artifact",
         "resolve_style_source": "artifact", "save_style_model": "artifact"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
