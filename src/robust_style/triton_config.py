"""The Triton model configuration of a style model: one function for export and server.

:func:`model_config` builds Triton's ``ModelConfig`` protobuf (``model_config.proto`` of
triton-inference-server/common) for a style: platform ``onnxruntime_onnx``,
``max_batch_size > 0`` so the batch axis is implicit and ``dims`` are the per-image
``[-1, -1, 3]`` (variable height and width, uint8 RGB), ``dynamic_batching`` and a
``latest: 1`` version policy. ``robust-style export --triton-repo`` writes it as
``config.pbtxt`` (:func:`config_pbtxt`); the server answers KServe ``ModelConfig`` with it,
so the two cannot disagree. Torch-free (the serving path imports it).
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import text_format

from robust_style import __version__
from robust_style.contract import INPUT_NAME, OUTPUT_NAME
from robust_style.server.protos.inference import model_config_pb2 as mc

__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_QUEUE_DELAY_US", "PLATFORM", "PLATFORMS", "BACKEND",
           "model_config", "config_pbtxt"]

DEFAULT_MAX_BATCH = 8
DEFAULT_QUEUE_DELAY_US = 2000
PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
#: KServe/Triton platform names of the server's engines (Triton's backend names).
PLATFORMS = {"onnxruntime": PLATFORM, "openvino": "openvino"}


def model_config(name: str, *, max_batch_size: int = DEFAULT_MAX_BATCH,
                 max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
                 preferred_batch_size: int | None = None,
                 input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME,
                 instance_kind: str | None = None,
                 parameters: Mapping[str, str] | None = None,
                 backend: str = BACKEND) -> mc.ModelConfig:
    """Triton's ``ModelConfig`` of the style model ``name``.

    ``instance_kind``: ``"cpu"`` or ``"gpu"`` adds one instance group of that kind (the
    server says where it runs the model; an export leaves the choice to Triton).
    ``parameters``: free-form strings (the server puts the file's sha256 there).
    ``backend``: the engine that runs the file (``onnxruntime``, ``openvino``); the
    platform is its Triton name (:data:`PLATFORMS`).
    """
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be >= 1 (dynamic batching needs a batch axis)")
    cfg = mc.ModelConfig(name=name, platform=PLATFORMS.get(backend, PLATFORM), backend=backend,
                         max_batch_size=max_batch_size)
    cfg.version_policy.latest.num_versions = 1
    cfg.input.add(name=input_name, data_type=mc.TYPE_UINT8, dims=[-1, -1, 3])
    cfg.output.add(name=output_name, data_type=mc.TYPE_UINT8, dims=[-1, -1, 3])
    cfg.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    if preferred_batch_size:
        cfg.dynamic_batching.preferred_batch_size.append(preferred_batch_size)
    if instance_kind is not None:
        kinds = {"cpu": mc.ModelInstanceGroup.KIND_CPU, "gpu": mc.ModelInstanceGroup.KIND_GPU}
        cfg.instance_group.add(kind=kinds[instance_kind], count=1)
    for key, value in (parameters or {}).items():
        cfg.parameters[key].string_value = value
    return cfg


def config_pbtxt(cfg: mc.ModelConfig, description: str = "") -> str:
    """``config.pbtxt`` text (protobuf text format) of ``cfg``, with a comment header."""
    note = "".join(f"# {line}\n" for line in description.splitlines() if line.strip())
    return (f"# Written by robust-style {__version__} (robust-style export --triton-repo).\n"
            f"{note}"
            "# Tensors: uint8 NHWC RGB in and out, same height and width; the batch axis is\n"
            "# implicit (max_batch_size > 0). Triton batches only same-sized images.\n"
            + text_format.MessageToString(cfg))
