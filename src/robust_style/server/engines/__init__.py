"""Inference engines for style models: ONNX Runtime and OpenVINO, torch-free.

:mod:`.base` (the :class:`Engine` protocol, the process-wide CPU budget, PSNR),
:mod:`.onnxruntime_engine` (TensorRT -> CUDA -> CPU providers by probing),
:mod:`.openvino_engine` (OpenVINO's CPU plugin, fp32 or bf16) and :mod:`.select`
(:class:`EngineConfig`, :class:`EngineSelector`: the choice per style and the load-time
accuracy gate). The server's registry and the local (no server) stylize path both load
models through :class:`EngineSelector`.
"""

from robust_style.server.engines.base import (
    ENGINES,
    GATE_PSNR_DB,
    PRECISIONS,
    CpuBudget,
    Engine,
    available_cores,
    cpu_budget,
    psnr,
)
from robust_style.server.engines.onnxruntime_engine import (
    OnnxRuntimeEngine,
    ProviderConfig,
    probe_providers,
)
from robust_style.server.engines.openvino_engine import (
    OpenVINOEngine,
    OpenVINOStatus,
    openvino_status,
)
from robust_style.server.engines.select import (
    EngineConfig,
    EngineSelector,
    LoadedEngine,
    warmup_image,
)

__all__ = ["ENGINES", "GATE_PSNR_DB", "PRECISIONS", "CpuBudget", "Engine", "EngineConfig",
           "EngineSelector", "LoadedEngine", "OnnxRuntimeEngine", "OpenVINOEngine",
           "OpenVINOStatus", "ProviderConfig", "available_cores", "cpu_budget",
           "openvino_status", "probe_providers", "psnr", "warmup_image"]
