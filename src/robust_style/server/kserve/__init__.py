"""KServe v2 / Triton ``inference.GRPCInferenceService``: :mod:`.service` (server, model
metadata, inference) and :mod:`.management` (model config, statistics, model control)."""

from robust_style.server.kserve.management import EXTENSIONS, KServeManagement
from robust_style.server.kserve.service import SERVICE_NAME, KServeService

__all__ = ["EXTENSIONS", "SERVICE_NAME", "KServeManagement", "KServeService"]
