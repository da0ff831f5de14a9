"""The Johnson et al. (2016) feed-forward style network and its training."""

from robust_style.transformer_net.artifact import (
    TrainedStyle,
    atomic_torch_save,
    load_style_model,
    resolve_style_source,
    save_style_model,
)
from robust_style.transformer_net.model import TransformerNet, TransformerNetConfig

__all__ = [
    "TrainedStyle",
    "TransformerNet",
    "TransformerNetConfig",
    "atomic_torch_save",
    "load_style_model",
    "resolve_style_source",
    "save_style_model",
]
