"""Export a :class:`~robust_style.transformer_net.TransformerNet` to ONNX.

The exported graph follows :mod:`robust_style.contract`: ``uint8`` NHWC RGB in, ``uint8``
NHWC RGB out, dynamic batch, height and width. :class:`ServingWrapper` puts the scaling,
rounding and transposes inside the graph so servers and clients pass decoded images
as they are. Export uses the dynamo exporter (``torch.onnx.export(dynamo=True)``) with
all weights inside the file (``external_data=False``), written atomically.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import onnx
import torch
from torch import nn
from torch.export import Dim

from robust_style.contract import INPUT_NAME, OUTPUT_NAME, StyleMetadata

__all__ = ["ServingWrapper", "export_onnx", "DEFAULT_OPSET"]

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18


class ServingWrapper(nn.Module):
    """``uint8 NHWC`` in -> network on ``[0,1] NCHW`` -> ``uint8 NHWC`` out (rounded)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).float() / 255.0
        y = self.net(x).clamp(0.0, 1.0)
        return torch.round(y * 255.0).to(torch.uint8).permute(0, 2, 3, 1)


def export_onnx(net: nn.Module, out_path: str | Path, metadata: StyleMetadata,
                opset: int = DEFAULT_OPSET) -> Path:
    """Export ``net`` (float ``[0,1]`` NCHW in and out) as a served style model.

    Returns the path written. The file appears atomically (temp file + rename).
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ServingWrapper(net).eval().cpu()
    example = torch.randint(0, 256, (1, 64, 96, 3), dtype=torch.uint8)
    dims = {0: Dim("batch"), 1: Dim("height"), 2: Dim("width")}
    with torch.no_grad():
        program = torch.onnx.export(
            wrapper, (example,), dynamo=True, external_data=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes={"image": dims}, verbose=False,
        )
    model = program.model_proto
    set_metadata(model, metadata)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        onnx.save_model(model, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("exported %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out


def set_metadata(model: onnx.ModelProto, metadata: StyleMetadata) -> None:
    """Replace the model's ``robust_style.*`` metadata_props with ``metadata``."""
    props = metadata.to_props()
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    model.producer_name = "robust-style"
    model.doc_string = metadata.description or f"robust-style style model {metadata.name!r}"
