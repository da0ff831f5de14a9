"""A run's files (rank 0 writes them): checkpoints, samples, ``log.csv``, the style model,
and reading them back to resume.

Every file is written atomically (temp file + rename), so a run killed at any moment
leaves no half-written file.

* :class:`RunFiles`: ``checkpoints/step-N.pt`` (network, optimizer, scaler, RNG states),
  ``samples/step-N.png`` with a content | style | result grid (:func:`make_grid`), and
  the final ``style_model.pt`` and ``config.json``.
* The loss log: :class:`CsvLog` writes ``log.csv`` rows; reading a loss (``.item()``)
  waits for the device to finish the step (a host sync, which stalls a GPU pipeline),
  so :class:`LossWindow` adds each step's terms into a device tensor and reads it once
  per ``--log-interval``.
* Resuming: :func:`load_resume_state` reads the newest checkpoint; a resumed run
  reproduces the uninterrupted one at a given precision, since the sample stream is a
  function of ``(seed, step)`` (:class:`~.data.StepSampler`) and the network, Adam
  state, grad scaler and RNG states come back from the checkpoint.
"""

from __future__ import annotations

import csv
import logging
import random
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from PIL import Image

from robust_style.errors import UserError
from robust_style.fileio import atomic_write, atomic_write_text
from robust_style.imageio import save_image
from robust_style.perceptual.checkpoint import load_checkpoint
from robust_style.transformer_net.artifact import (
    CHECKPOINT_DIR,
    STYLE_MODEL_FILE,
    latest_checkpoint,
    save_style_model,
)
from robust_style.transformer_net.config import TrainConfig
from robust_style.transformer_net.model import TransformerNet, set_style

__all__ = ['CsvLog', 'LossWindow', 'RunConfig', 'RunFiles', 'check_same_inputs', 'get_rng', 'load_resume_state', 'log_fields', 'make_grid', 'merge_resume_config', 'set_rng', 'tensor_to_image']

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

    def save_checkpoint(self, step: int, config: RunConfig, net: TransformerNet,
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

    def save_final(self, step: int, config: RunConfig, net: TransformerNet) -> Path:
        """``style_model.pt`` (what ``export`` reads) and ``config.json``."""
        path = self.run / STYLE_MODEL_FILE
        save_style_model(path, net, self._meta(step, config))
        atomic_write_text(self.run / "config.json", config.to_json())
        log.info("trained %d steps; style model: %s", step, path)
        return path


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """``(1, 3, H, W)`` or ``(3, H, W)`` float in [0, 1] to a PIL RGB image."""
    if x.dim() == 4:
        x = x[0]
    arr = (x.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def make_grid(images: Sequence[Image.Image], height: int = 256, gap: int = 4) -> Image.Image:
    """Images side by side at a common height, on white."""
    scaled = [im.resize((max(1, round(im.width * height / im.height)), height), Image.Resampling.LANCZOS)
              for im in images]
    width = sum(im.width for im in scaled) + gap * (len(scaled) - 1)
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    x = 0
    for im in scaled:
        grid.paste(im, (x, 0))
        x += im.width + gap
    return grid


_HEAD = ("step", "epoch")
_TAIL = ("total", "images_per_s", "data_wait_s", "elapsed_s")


def log_fields(terms: Sequence[str]) -> tuple[str, ...]:
    """``log.csv`` columns: step, epoch, one per loss term, total, images/s, the seconds
    the loop waited for batches since the previous row (``data_wait_s``: 0 when loading
    keeps ahead of training), elapsed."""
    return (*_HEAD, *terms, *_TAIL)


class CsvLog:
    """Appends rows to ``log.csv``; on resume drops rows past the resumed step."""

    def __init__(self, path: Path, fields: Sequence[str], resume_step: int | None) -> None:
        self.path = path
        self.fields = tuple(fields)
        rows: list[dict[str, str]] = []
        if resume_step is not None and path.is_file():
            with path.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
        with atomic_write(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, self.fields, extrasaction="ignore").writerow(row)
            fh.flush()


class LossWindow:
    """Sums of the loss terms (and of non-finite losses) since the last log row.

    ``add`` takes the step's detached ``(terms..., nonfinite)`` vector and never syncs;
    ``read`` syncs once, averaging over steps and, under DDP, over ranks (every rank
    must call it at the same step).
    """

    def __init__(self, terms: Sequence[str], device: torch.device) -> None:
        self.terms = tuple(terms)
        self.device = device
        self._sum = torch.zeros(len(self.terms) + 1, dtype=torch.float64, device=device)
        self.steps = 0

    def add(self, values: torch.Tensor) -> None:
        self._sum += values.to(torch.float64)
        self.steps += 1

    def any_nonfinite(self, distributed: bool = False) -> bool:
        """Whether a step since the last row had a non-finite loss (a host sync)."""
        flag = self._sum[-1:].clone()
        if distributed:
            dist.all_reduce(flag)
        return bool(flag.item() > 0)

    def read(self, distributed: bool = False) -> tuple[dict[str, float], bool]:
        """``({term: mean}, any_nonfinite)``; resets the window."""
        total = self._sum.clone()
        if distributed:
            dist.all_reduce(total)
        world = dist.get_world_size() if distributed else 1
        values = total.tolist()  # the one host sync per log interval
        n = max(self.steps, 1) * world
        means = {k: v / n for k, v in zip(self.terms, values[:-1], strict=True)}
        self._sum.zero_()
        self.steps = 0
        return means, values[-1] > 0




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
