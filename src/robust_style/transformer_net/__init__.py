"""The Johnson et al. (2016) feed-forward style network and its training."""

from robust_style.transformer_net.model import TransformerNet, TransformerNetConfig

__all__ = ["TransformerNet", "TransformerNetConfig"]
