"""``--init-from``: start training from an existing style network's weights (fine-tuning).

The source is a run folder, a style model or checkpoint ``.pt`` (loaded with
``weights_only=True``), or an exported style ``.onnx`` file (e.g. the bundled
``the-scream.onnx``): export keeps the PyTorch parameter names as the ONNX initializer
names, from which the architecture (channels, residual blocks) is read back, so the
weights come back exactly. Only the network's weights are taken; the optimiser starts fresh and
every training option comes from the new command line.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from robust_style.errors import UserError
from robust_style.transformer_net.arch import TransformerNetConfig
from robust_style.transformer_net.artifact import load_style_model
from robust_style.transformer_net.model import TransformerNet

__all__ = ["load_initial_net"]

log = logging.getLogger(__name__)


def load_initial_net(source: str | Path, *, trust: bool = False,
                     mix: Mapping[str, float] | Literal["mean"] | None = None) -> TransformerNet:
    """The style network stored in ``source`` (run folder, ``.pt`` or ``.onnx``); of a
    multi-style one, the style or blend ``mix`` (``load_style_model``)."""
    path = Path(source)
    if path.suffix.lower() == ".onnx":
        net = _from_onnx(path)
    else:
        net = load_style_model(path, trust=trust, mix=mix).net
    log.info("initial weights from %s", path)
    return net


def _from_onnx(path: Path) -> TransformerNet:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:  # pragma: no cover - onnx is in the train extra
        raise UserError(f"--init-from {path}: reading ONNX needs the 'onnx' package") from exc
    if not path.is_file():
        raise UserError(f"--init-from: no such file: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise UserError(f"--init-from: cannot read {path} as ONNX: {exc}") from None
    inits = {i.name: i for i in model.graph.initializer}
    net_config = _architecture(path, inits, {p.key: p.value for p in model.metadata_props})
    net = TransformerNet(net_config)
    # Equal initializers are stored once (e.g. untrained norms, all ones): the norm
    # parameters are found through the InstanceNormalization nodes, in network order.
    norms = [n for n, m in net.named_modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    nodes = [n for n in model.graph.node if n.op_type == "InstanceNormalization"]
    source = {}
    if len(norms) == len(nodes):
        for prefix, node in zip(norms, nodes, strict=True):
            source[f"{prefix}.weight"], source[f"{prefix}.bias"] = node.input[1], node.input[2]
    state = {}
    for key, ref in net.state_dict().items():
        name = source.get(key, key)
        if name not in inits:
            raise UserError(f"--init-from: {path} lacks the weight {key!r}; was it exported "
                            "by robust-style with this architecture?")
        arr = numpy_helper.to_array(inits[name]).astype("float32")
        if tuple(arr.shape) != tuple(ref.shape):
            raise UserError(f"--init-from: {path}: {key} has shape {arr.shape}, expected "
                            f"{tuple(ref.shape)}")
        state[key] = torch.from_numpy(arr.copy())
    net.load_state_dict(state, strict=True)
    return net.eval()


def _architecture(path: Path, inits: dict[str, Any],
                  props: dict[str, str] | None = None) -> TransformerNetConfig:
    """The architecture recorded in the file's metadata (``robust_style.net_config``);
    in a file without it, channels and residual-block count from the initializer names
    and shapes (such files predate the presets: Johnson's network otherwise)."""
    recorded = (props or {}).get("robust_style.net_config")
    if recorded:
        try:
            return TransformerNetConfig.from_dict(json.loads(recorded))
        except (ValueError, TypeError, AttributeError):
            raise UserError(f"{path}: unreadable robust_style.net_config metadata") from None
    try:
        channels = tuple(int(inits[f"encoder.{i}.0.1.weight"].dims[0]) for i in range(3))
    except KeyError:
        raise UserError(f"--init-from: {path} is not a robust-style style model (no "
                        "encoder weights by the PyTorch names; was it made by "
                        "`robust-style export`?)") from None
    blocks = {int(m.group(1)) for n in inits if (m := re.match(r"residuals\.(\d+)\.", n))}
    return TransformerNetConfig(channels, len(blocks))  # type: ignore[arg-type]
