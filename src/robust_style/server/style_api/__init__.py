"""The own API, ``robust_style.v1.StyleTransfer`` (:mod:`.service`)."""

from robust_style.server.style_api.service import SERVICE_NAME, StyleTransferService

__all__ = ["SERVICE_NAME", "StyleTransferService"]
