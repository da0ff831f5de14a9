"""What a run writes (rank 0 only): checkpoints, sample pictures, the final style model.

Every file is written atomically (temp file + rename), so a run killed at any moment
leaves no half-written file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image

from robust_style.fileio import atomic_write_text
from robust_style.imageio import save_image
from robust_style.transformer_net.artifact import CHECKPOINT_DIR, STYLE_MODEL_FILE, save_style_model
from robust_style.transformer_net.model import set_style
from robust_style.transformer_net.resume import get_rng
from robust_style.transformer_net.samples import make_grid, tensor_to_image

__all__ = ["RunConfig", "RunFiles"]

log = logging.getLogger(__name__)


class RunConfig(Protocol):
    """What a run's config must offer (:class:`TrainConfig`, ``DistillConfig``)."""

    def to_dict(self) -> dict[str, Any]: ...

    def to_json(self) -> str: ...


class RunFiles:
    """The run folder: ``checkpoints/``, ``samples/``, ``style_model.pt``, ``config.json``.

    ``meta`` is what every saved model carries (name, backbone and artwork identity,
    precision, ...); ``steps``, ``config`` and ``created`` are added at each save.
    ``style_images``: one artwork, or one per style of a multi-style network (whose
    names are ``meta["styles"]``), each sampled on its own.
    """

    def __init__(self, run: Path, meta: dict[str, Any], keep_checkpoints: int,
                 sample_x: torch.Tensor | None,
                 style_images: Image.Image | Sequence[Image.Image]) -> None:
        self.run = run
        self.meta = dict(meta)
        self.keep = keep_checkpoints
        self.sample_x = sample_x
        self.style_images = ([style_images] if isinstance(style_images, Image.Image)
                             else list(style_images))

    def prepare(self) -> None:
        (self.run / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
        for stale in (self.run / CHECKPOINT_DIR).glob(".step-*.tmp"):  # from a killed write
            stale.unlink(missing_ok=True)
        (self.run / "samples").mkdir(exist_ok=True)

    def _meta(self, step: int, config: RunConfig) -> dict[str, Any]:
        return {**self.meta, "steps": step, "config": config.to_dict(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    def save_checkpoint(self, step: int, config: RunConfig, net: torch.nn.Module,
                        training_state: dict[str, Any]) -> Path:
        """``checkpoints/step-N.pt``: the network, ``training_state`` (optimizer, scaler,
        samples seen) and the RNG states; older checkpoints beyond the kept ones go."""
        path = self.run / CHECKPOINT_DIR / f"step-{step:08d}.pt"
        save_style_model(path, net, self._meta(step, config), kind="checkpoint", extra={
            **training_state, "step": step, "rng": get_rng(), "train_config": config.to_dict()})
        for old in sorted((self.run / CHECKPOINT_DIR).glob("step-*.pt"))[:-self.keep]:
            old.unlink(missing_ok=True)
        return path

    def save_sample(self, step: int, net: torch.nn.Module) -> None:
        """``samples/step-N.png`` (the sample photo stylised) and ``-grid.png``; of a
        multi-style network, ``step-N-STYLE.png`` and its grid for each style."""
        if self.sample_x is None:
            return
        names = self.meta.get("styles") or [""]
        for index, (name, style_image) in enumerate(zip(names, self.style_images, strict=True)):
            set_style(net, index)
            with torch.no_grad():
                y = net(self.sample_x)
            out = tensor_to_image(y)
            stem = f"step-{step:08d}" + (f"-{name}" if name else "")
            save_image(out, self.run / "samples" / f"{stem}.png")
            grid = make_grid([tensor_to_image(self.sample_x), style_image, out])
            save_image(grid, self.run / "samples" / f"{stem}-grid.png")

    def save_final(self, step: int, config: RunConfig, net: torch.nn.Module) -> Path:
        """``style_model.pt`` (what ``export`` reads) and ``config.json``."""
        path = self.run / STYLE_MODEL_FILE
        save_style_model(path, net, self._meta(step, config))
        atomic_write_text(self.run / "config.json", config.to_json())
        log.info("trained %d steps; style model: %s", step, path)
        return path
