"""Known loss-network weights: the registry, the local cache, download, import, verify.

``robust-style weights list|download|import|verify`` is the command line; other commands
call :func:`resolve_backbone` so ``--backbone robust-resnet50-l2-3`` finds the cached file.
"""

from robust_style.perceptual.weights.cache import (
    HOME_ENV,
    cache_dir,
    cached_path,
    file_sha256,
    resolve_backbone,
)
from robust_style.perceptual.weights.registry import (
    REGISTRY_ENV,
    Registry,
    WeightsEntry,
    load_registry,
)

__all__ = [
    "HOME_ENV",
    "REGISTRY_ENV",
    "Registry",
    "WeightsEntry",
    "cache_dir",
    "cached_path",
    "file_sha256",
    "load_registry",
    "resolve_backbone",
]
