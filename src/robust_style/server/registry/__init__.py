"""The model registry: styles by name, loaded from the models folder, hot reload.

:mod:`.registry` (:class:`ModelRegistry`: load, unload, reload, index, states, watching),
:mod:`.style_model` (:class:`StyleModel`, loading a file through the engines) and
:mod:`.repository` (the models folder's files, :class:`ModelState`, :class:`LoadError`).
"""

from robust_style.server.engines import EngineConfig, ProviderConfig
from robust_style.server.registry.registry import EVICTED, ModelRegistry, RegistryConfig
from robust_style.server.registry.repository import LoadError, ModelState, list_models
from robust_style.server.registry.style_model import StyleModel, load_style, load_style_file

__all__ = ["EVICTED", "EngineConfig", "ProviderConfig", "RegistryConfig", "StyleModel", "ModelRegistry",
           "ModelState", "LoadError", "list_models", "load_style", "load_style_file"]
