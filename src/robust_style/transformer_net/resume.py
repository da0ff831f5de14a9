"""Continuing a run: its newest checkpoint, the config it gives, and the RNG states.

A resumed run reproduces the uninterrupted one at a given precision: the sample stream
is a function of ``(seed, step)`` (:mod:`.sampler`), and the network, Adam state, grad
scaler and RNG states come back from the checkpoint.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch

from robust_style.errors import UserError
from robust_style.perceptual.checkpoint import load_checkpoint
from robust_style.transformer_net.artifact import CHECKPOINT_DIR, latest_checkpoint
from robust_style.transformer_net.config import TrainConfig

__all__ = [
    "check_same_inputs",
    "get_rng",
    "load_resume_state",
    "merge_resume_config",
    "set_rng",
]

log = logging.getLogger(__name__)


def load_resume_state(run: Path) -> dict[str, Any]:
    """The newest checkpoint of ``run`` (with its ``path``), or a one-line error."""
    ckpt = latest_checkpoint(run)
    if ckpt is None:
        raise UserError(f"--resume: no checkpoint in {run / CHECKPOINT_DIR}; "
                        "start without --resume")
    state = load_checkpoint(ckpt)
    if not isinstance(state, dict) or state.get("kind") != "checkpoint":
        raise UserError(f"{ckpt} is not a robust-style training checkpoint")
    state["path"] = ckpt
    return state


def merge_resume_config(saved: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
    """The saved config with the options given again on the command line applied."""
    return TrainConfig.from_dict({**saved, **overrides})


def check_same_inputs(state: dict[str, Any], style_path: Path, style_sha: str,
                      backbone_sha: str) -> None:
    """Refuse to resume when the artwork or the loss network's weights changed."""
    meta = state.get("meta", {})
    if meta.get("style_image_sha256") not in (None, "", style_sha):
        raise UserError(f"the style image {style_path} changed since the checkpoint was "
                        "written; resuming would mix two styles. Start a new --out")
    if meta.get("backbone_sha256") not in (None, "", backbone_sha):
        raise UserError("the backbone weights changed since the checkpoint was written; "
                        "start a new --out")


def get_rng() -> dict[str, Any]:
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def set_rng(rng: dict[str, Any]) -> None:
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "python" in rng:
        random.setstate(_as_tuple(rng["python"]))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _as_tuple(obj: Any) -> Any:
    return tuple(_as_tuple(o) for o in obj) if isinstance(obj, (list, tuple)) else obj
