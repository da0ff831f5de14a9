"""What a run writes (rank 0 only): checkpoints, sample pictures, the final style model.

Every file is written atomically (temp file + rename), so a run killed at any moment
leaves no half-written file.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image

from robust_style.fileio import atomic_write_text
from robust_style.imageio import save_image
from robust_style.transformer_net.artifact import CHECKPOINT_DIR, STYLE_MODEL_FILE, save_style_model
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
    """

    def __init__(self, run: Path, meta: dict[str, Any], keep_checkpoints: int,
                 sample_x: torch.Tensor | None, style_image: Image.Image) -> None:
        self.run = run
        self.meta = dict(meta)
        self.keep = keep_checkpoints
        self.sample_x = sample_x
        self.style_image = style_image

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
        """``samples/step-N.png`` (the sample photo stylised) and ``-grid.png``."""
        if self.sample_x is None:
            return
        with torch.no_grad():
            y = net(self.sample_x)
        out = tensor_to_image(y)
        save_image(out, self.run / "samples" / f"step-{step:08d}.png")
        grid = make_grid([tensor_to_image(self.sample_x), self.style_image, out])
        save_image(grid, self.run / "samples" / f"step-{step:08d}-grid.png")

    def save_final(self, step: int, config: RunConfig, net: torch.nn.Module) -> Path:
        """``style_model.pt`` (what ``export`` reads) and ``config.json``."""
        path = self.run / STYLE_MODEL_FILE
        save_style_model(path, net, self._meta(step, config))
        atomic_write_text(self.run / "config.json", config.to_json())
        log.info("trained %d steps; style model: %s", step, path)
        return path
