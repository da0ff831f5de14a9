"""Safe loading of loss-network checkpoints.

Every file goes through :func:`load_checkpoint`, which always calls
``torch.load(weights_only=True, map_location=...)``: a checkpoint is untrusted input,
and full unpickling can run arbitrary code. Files that need full unpickling are refused
unless the caller passes ``trust=True`` (``--trust-checkpoint`` on the CLI).

:func:`extract_resnet50_state_dict` understands the layouts MadryLab's ``robustness``
library writes (Engstrom et al. 2019): a top-level ``model`` (or ``state_dict``) entry,
the DataParallel ``module.`` prefix, the wrapped ``model.*`` weights with a duplicate
``attacker.model.*`` copy, and ``normalizer.*`` / ``attacker.normalize.*`` buffers
(dropped: the loss network normalises its input itself, without the clamp of
``robustness``' ``InputNormalize`` that kills gradients outside [0, 1]). Plain
torchvision state dicts load as they are.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from robust_style.errors import UserError, first_line

__all__ = [
    "load_checkpoint",
    "extract_state_dict",
    "extract_resnet50_state_dict",
    "load_state_dict_strict",
    "LPIPS_LIN_CHANNELS",
    "check_lpips_lin",
]

log = logging.getLogger(__name__)

_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "net")


def load_checkpoint(path: str | Path, *, trust: bool = False,
                    map_location: str | torch.device = "cpu") -> Any:
    """Load a torch checkpoint file safely.

    Args:
        path: the file.
        trust: allow full unpickling (runs code embedded in the file). Only for files
            from a source you trust.
        map_location: where tensors go; tensors saved on CUDA load on a CPU-only machine.

    Raises:
        UserError: the file is missing, truncated or corrupt, or needs unsafe unpickling.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p}")
    if p.stat().st_size == 0:
        raise UserError(f"checkpoint is empty (0 bytes): {p}")
    try:
        return torch.load(p, map_location=map_location, weights_only=not trust)
    except pickle.UnpicklingError as exc:
        if trust:
            raise UserError(f"cannot unpickle checkpoint {p}: {first_line(exc)}") from exc
        raise UserError(
            f"refusing to load {p}: it contains Python objects that only full unpickling "
            f"can restore, which can run arbitrary code ({first_line(exc)}). If you trust "
            "the file's source, opt in with --trust-checkpoint (trust=True in Python)"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        raise UserError(f"checkpoint {p} is truncated or corrupt: {first_line(exc)}") from exc


def extract_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap a loaded checkpoint to a flat ``{name: tensor}`` dict.

    Accepts a state dict or a dict holding one under ``model``/``state_dict``/...; strips
    DataParallel ``module.`` prefixes.
    """
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor)
                                                  for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise UserError(f"{source} holds a {type(obj).__name__}, not a state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError(f"{source} holds no tensors (keys: {', '.join(map(str, list(obj)[:8]))})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def extract_resnet50_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The torchvision ``resnet50`` weights inside a MadryLab or plain checkpoint."""
    sd = extract_state_dict(obj, source)
    if any(k.startswith("model.") for k in sd):
        # robustness' AttackerModel: model.* is the classifier; attacker.model.* is the
        # same tensors again; normalizer.* and attacker.normalize.* are mean/std buffers.
        sd = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    return sd


def load_state_dict_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor],
                           source: str, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """``load_state_dict(strict=True)`` with an error a person can act on.

    Names the missing and unexpected keys (the first few) and shape mismatches, which
    is what tells a user they passed the wrong architecture.
    """
    wanted = module.state_dict()
    sd = {k: v for k, v in state_dict.items() if not k.startswith(ignore_prefixes)}
    missing = [k for k in wanted if k not in sd]
    unexpected = [k for k in sd if k not in wanted]
    shapes = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in wanted.items()
              if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({', '.join(missing[:4])}"
                         f"{', ...' if len(missing) > 4 else ''})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:4])}"
                         f"{', ...' if len(unexpected) > 4 else ''})")
        if shapes:
            parts.append(f"shape mismatches ({'; '.join(shapes[:3])})")
        raise UserError(f"{source} does not fit a {type(module).__name__}: " + "; ".join(parts)
                        + ". Is it the right architecture for this backbone?")
    module.load_state_dict(sd, strict=True)


#: Channels of the five LPIPS-alex v0.1 linear layers (Zhang et al., CVPR 2018), one per
#: AlexNet conv-layer ReLU.
LPIPS_LIN_CHANNELS = (64, 192, 384, 256, 256)


def check_lpips_lin(state_dict: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The five LPIPS-alex linear layers ``lin{k}.model.1.weight`` of shape (1, C, 1, 1)."""
    out: dict[str, torch.Tensor] = {}
    for k, c in enumerate(LPIPS_LIN_CHANNELS):
        key = f"lin{k}.model.1.weight"
        t = state_dict.get(key)
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (1, c, 1, 1):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else "missing"
            raise UserError(f"{source} is not LPIPS-alex linear layers: {key} is {got}, "
                            f"expected (1, {c}, 1, 1)")
        out[key] = t.float()
    return out
