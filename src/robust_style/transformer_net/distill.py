"""Distillation: teach a small style network to reproduce a trained one (issue 23).

The teacher (a run folder, a style model ``.pt``, or an exported ``.onnx`` such as the
bundled style, run with ONNX Runtime on the CPU) stylises a **bank** of random crops of
the content photos once, at the start; the student (an :mod:`.arch` preset) is then
trained to reproduce those outputs with a pixel loss (L1 by default, or L2). This is
knowledge distillation with the teacher's outputs as regression targets (Hinton et al.
2015, "Distilling the knowledge in a neural network"), far cheaper per step than
training against a loss network: one small forward and backward, no VGG, no teacher
(its forward passes are paid once, for the bank).

Crops are taken at several scales (the photo's shorter side resized to 1, 1.4 or 2
times the crop), so the student sees the teacher's strokes at the sizes it will be
served at. The bank and the batches are functions of ``(seed, step)``, so a resumed
run sees what the uninterrupted one would have.

A pixel loss alone averages away the fine strokes a student cannot place exactly, and
those strokes carry much of a style's Gram statistics (measured: students 19-29% further
from the artwork than the teacher in VGG-19 style distance, docs/realtime.md). So
``--perceptual BACKBONE`` adds a **Gram term between student and teacher outputs** on a
loss network (feature-statistics distillation; the Gram matrices of Gatys et al. 2016
with Johnson et al.'s normalisation): ``Σ_l ‖G_l(student) − G_l(teacher)‖² /
‖G_l(teacher)‖²`` over the backbone's style layers, relative so that its weight needs
no tuning per backbone or input scale. Its targets are the teacher's outputs, never the
artwork, so the student learns the teacher's style, not a new one.

A distillation run is a training run folder (:mod:`.run_files`: ``checkpoints/``,
``samples/`` with content | teacher | student grids, ``log.csv``, ``style_model.pt``),
so ``export``, ``serve`` and ``--resume`` treat it like any other; the teacher's
identity (style name, loss network, painting hashes) is carried into the student's
metadata.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from robust_style import __version__
from robust_style.errors import UserError, first_line
from robust_style.fileio import sha256_file
from robust_style.imageio import load_rgb, resize_shorter_side
from robust_style.perceptual import LossNetwork, backbone_spec, build_loss_network, gram_matrix
from robust_style.perceptual.weights.cache import resolve_backbone
from robust_style.transformer_net.arch import arch_preset
from robust_style.transformer_net.artifact import (
    STYLE_MODEL_FILE,
    latest_checkpoint,
    load_style_model,
)
from robust_style.transformer_net.data import find_images
from robust_style.transformer_net.model import TransformerNet
from robust_style.transformer_net.run_files import (
    CsvLog,
    LossWindow,
    RunFiles,
    load_resume_state,
    log_fields,
    set_rng,
)
from robust_style.transformer_net.runtime import autocast, resolve_precision
from robust_style.transformer_net.step import to_channels_last

__all__ = ["DistillConfig", "DistillResult", "GramTerm", "LOSSES", "distill", "load_teacher"]

log = logging.getLogger(__name__)

#: Pixel losses between student and teacher outputs (images in [0, 1]).
LOSSES = ("l1", "l2")
#: Crop scales: the photo's shorter side is resized to this many crop sides.
_SCALES = (1.0, 1.4, 2.0)


@dataclass(frozen=True)
class DistillConfig:
    """Everything that defines a distillation run; stored in every checkpoint."""

    teacher: str
    content: str
    out: str
    arch: str = "quarter"
    name: str = ""
    image_size: int = 256
    bank_size: int = 256
    batch_size: int = 8
    lr: float = 2e-3
    max_steps: int = 2000
    max_minutes: float | None = None
    loss: str = "l1"
    perceptual: str = ""
    perceptual_weights: str = ""
    perceptual_weight: float = 1.0
    seed: int = 0
    precision: str = "auto"
    checkpoint_interval: int = 200
    sample_interval: int = 200
    log_interval: int = 10
    keep_checkpoints: int = 3
    sample_image: str | None = None
    trust_checkpoint: bool = False

    def __post_init__(self) -> None:
        arch_preset(self.arch)  # one-line error listing the names
        checks = [
            (self.image_size >= 16, f"--image-size must be >= 16, got {self.image_size}"),
            (self.bank_size >= 1, f"--bank-size must be >= 1, got {self.bank_size}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (self.max_steps >= 1, f"--max-steps must be >= 1, got {self.max_steps}"),
            (self.max_minutes is None or self.max_minutes > 0, "--max-minutes must be > 0"),
            (self.loss in LOSSES, f"--loss must be one of {', '.join(LOSSES)}, got {self.loss}"),
            (self.perceptual_weight >= 0,
             f"--perceptual-weight must be >= 0, got {self.perceptual_weight}"),
            (self.precision in ("auto", "fp32", "bf16"),
             f"--precision must be auto, fp32 or bf16, got {self.precision}"),
            (self.checkpoint_interval >= 1, "--checkpoint-interval must be >= 1"),
            (self.sample_interval >= 0, "--sample-interval must be >= 0 (0 disables samples)"),
            (self.log_interval >= 1, "--log-interval must be >= 1"),
            (self.keep_checkpoints >= 1, "--keep-checkpoints must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistillConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class DistillResult:
    run_dir: Path
    style_model: Path
    steps: int
    config: DistillConfig


class Teacher:
    """A trained style network as a function ``uint8 NHWC -> uint8 NHWC`` (served form).

    An ``.onnx`` runs on ONNX Runtime's CPU provider, exactly what the reference engine
    of the server computes; a run folder or ``.pt`` runs in torch (float32, eval mode),
    its output rounded like the served graph's.
    """

    def __init__(self, source: str | Path, *, trust: bool = False) -> None:
        path = Path(source)
        self.source = path
        self.meta: dict[str, Any] = {}
        self._session: Any = None
        self._net: TransformerNet | None = None
        if path.suffix.lower() == ".onnx":
            import onnxruntime as ort

            from robust_style.contract import INPUT_NAME, parse_metadata

            if not path.is_file():
                raise UserError(f"teacher: no such file: {path}")
            try:
                self._session = ort.InferenceSession(str(path),
                                                     providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise UserError(f"teacher: cannot load {path} with ONNX Runtime: "
                                f"{first_line(exc)}") from None
            self._input = INPUT_NAME
            md = parse_metadata(self._session.get_modelmeta().custom_metadata_map,
                                default_name=path.stem)
            self.meta = {"name": md.name, "backbone": md.backbone,
                         "backbone_sha256": md.backbone_sha256,
                         "style_image_sha256": md.style_image_sha256, "steps": md.steps}
        else:
            style = load_style_model(path, trust=trust)
            self._net = style.net.eval()
            self.meta = {k: style.meta.get(k, "") for k in (
                "name", "backbone", "backbone_sha256", "style_image_sha256", "steps")}
            self.meta["name"] = style.name
        self.sha256 = sha256_file(path) if path.is_file() else ""

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 photos -> the teacher's ``(N, H, W, 3)`` uint8 outputs."""
        if self._session is not None:
            return np.asarray(self._session.run(None, {self._input: images})[0])
        assert self._net is not None
        with torch.no_grad():
            x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255
            y = self._net(x).clamp(0, 1).mul(255).round().to(torch.uint8)
        return y.permute(0, 2, 3, 1).contiguous().numpy()


class GramTerm:
    """The relative Gram distance of student to teacher outputs on a loss network (module
    doc); ``weight * Σ_l ‖G_l(y) − G_l(t)‖² / ‖G_l(t)‖²``."""

    def __init__(self, backbone: str, weights: str, weight: float, *, trust: bool) -> None:
        arch, path = resolve_backbone(backbone, weights or None)
        spec = backbone_spec(arch)
        if spec.needs_weights and path is None:
            raise UserError(f"--perceptual {backbone} needs --perceptual-weights FILE "
                            "(or a registry name: robust-style weights list)")
        self.net: LossNetwork = build_loss_network(arch, path, trust=trust)
        # channels-last: measured 2.3x faster than NCHW for VGG-16 under bf16 autocast on
        # the CPU (8 x 256^2 forward+backward, 1.3 vs 3.0 s), as in training (step.py).
        to_channels_last(self.net)
        self.layers = spec.style_layers
        self.weight = weight

    def __call__(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        y, target = (t.contiguous(memory_format=torch.channels_last) for t in (y, target))
        with torch.no_grad():
            want = {n: gram_matrix(f) for n, f in self.net(target, self.layers).items()}
        got = {n: gram_matrix(f) for n, f in self.net(y, self.layers).items()}
        total = torch.zeros((), device=y.device)
        for n in self.layers:
            total = total + (got[n] - want[n]).square().sum() / want[n].square().sum().clamp_min(1e-12)
        return self.weight * total


def load_teacher(source: str | Path, *, trust: bool = False) -> Teacher:
    """The teacher in ``source`` (run folder, ``.pt`` or ``.onnx``)."""
    return Teacher(source, trust=trust)


def _crop(path: Path, size: int, rng: random.Random) -> np.ndarray:
    im = load_rgb(path)
    side = round(size * rng.choice(_SCALES))
    im = resize_shorter_side(im, side, Image.Resampling.BILINEAR)
    w, h = im.size
    left, top = rng.randint(0, w - size), rng.randint(0, h - size)
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def make_bank(files: list[Path], teacher: Teacher, size: int, count: int, seed: int,
              chunk: int = 8, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random crops of ``files`` and the teacher's outputs on them, both
    ``(count, 3, size, size)`` uint8 (a function of ``seed``)."""
    rng = random.Random(seed)
    crops = [_crop(files[i % len(files)], size, rng) for i in range(count)]
    outs = []
    for i in tqdm(range(0, count, chunk), desc="teacher targets", unit="batch",
                  dynamic_ncols=True, mininterval=1.0, disable=not progress):
        outs.append(teacher(np.stack(crops[i:i + chunk])))
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.concatenate(outs)).permute(0, 3, 1, 2).contiguous()
    return x, y


def distill(config: DistillConfig, *, resume: bool = False,
            overrides: dict[str, Any] | None = None, progress: bool = True) -> DistillResult:
    """Distil (or, with ``resume``, continue distilling) a student; see the module doc.
    ``progress``: draw the progress bars (``robust-style -q`` turns them off)."""
    run = Path(config.out)
    state: dict[str, Any] | None = None
    if resume:
        state = load_resume_state(run)
        config = DistillConfig.from_dict({**state["train_config"], **(overrides or {})})
    elif latest_checkpoint(run) is not None or (run / STYLE_MODEL_FILE).exists():
        raise UserError(f"{run} already holds a run; add --resume to continue it, "
                        "or choose a new --out")
    device = torch.device("cpu")
    config = dataclasses.replace(config, precision=resolve_precision(config.precision, device))
    teacher = load_teacher(config.teacher, trust=config.trust_checkpoint)
    if state is not None and state.get("meta", {}).get("teacher_sha256") not in (
            None, "", teacher.sha256):
        raise UserError(f"the teacher {config.teacher} changed since the checkpoint was "
                        "written; start a new --out")
    files = find_images(config.content)
    if not files:
        raise UserError(f"no JPEG/PNG/WebP photos in {config.content}")
    files = [p for p in files if not config.sample_image or p != Path(config.sample_image)]
    total, start = config.max_steps, int(state["step"]) if state is not None else 0
    if start >= total:
        raise UserError(f"the run is already at step {start} of {total}; pass a larger "
                        "--max-steps to continue it")
    torch.manual_seed(config.seed)
    log.info("distilling %s into %s (%s) on %d photos", teacher.source, config.arch,
             config.precision, len(files))
    bank_x, bank_y = make_bank(files, teacher, config.image_size, config.bank_size, config.seed,
                               progress=progress)

    gram = (GramTerm(config.perceptual, config.perceptual_weights, config.perceptual_weight,
                     trust=config.trust_checkpoint)
            if config.perceptual and config.perceptual_weight > 0 else None)
    net = TransformerNet(arch_preset(config.arch))
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    if state is not None:
        net.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        set_rng(state.get("rng", {}))
        log.info("resumed %s at step %d", state["path"], start)

    sample = Path(config.sample_image) if config.sample_image else files[-1]
    sample_u8 = np.array(resize_shorter_side(load_rgb(sample), max(config.image_size, 256)),
                         dtype=np.uint8)
    sample_x = torch.from_numpy(sample_u8).permute(2, 0, 1).unsqueeze(0).float() / 255
    name = config.name or f"{teacher.meta.get('name') or teacher.source.stem}-{config.arch}"
    files_out = RunFiles(run, {
        **{k: teacher.meta.get(k, "") for k in ("backbone", "backbone_sha256",
                                                 "style_image_sha256")},
        "name": name, "backbone_arch": "", "backbone_weights": "",
        "style_image": "", "package_version": __version__, "sample_image": str(sample),
        "precision": config.precision, "teacher": teacher.source.name,
        "teacher_sha256": teacher.sha256, "teacher_steps": teacher.meta.get("steps", 0),
        "distilled_from": teacher.meta.get("name", ""),
    }, config.keep_checkpoints, sample_x, Image.fromarray(teacher(sample_u8[None])[0]))
    files_out.prepare()
    terms = (config.loss, "gram") if gram is not None else (config.loss,)
    csv_log = CsvLog(run / "log.csv", log_fields(terms), start if state is not None else None)
    window = LossWindow(terms, device)
    bar = tqdm(total=total, initial=start, unit="step", desc=f"distill {name}",
               dynamic_ncols=True, mininterval=1.0, disable=not progress)
    net.train()
    t_start = t_window = time.perf_counter()
    step = start
    while step < total:
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        idx = torch.randint(0, config.bank_size, (config.batch_size,), generator=g)
        for group in opt.param_groups:  # cosine decay to lr/20 over --max-steps
            group["lr"] = config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / total)))
        x = bank_x[idx].float() / 255
        target = bank_y[idx].float() / 255
        with autocast(device, config.precision):
            y = net(x).float()
            pixel = F.l1_loss(y, target) if config.loss == "l1" else F.mse_loss(y, target)
            parts = [pixel] if gram is None else [pixel, gram(y, target)]
        loss = torch.stack(parts).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.add(torch.stack([*(p.detach() for p in parts), (~torch.isfinite(loss)).float()]))
        step += 1
        bar.update(1)
        if step % config.log_interval == 0 or step == total:
            now = time.perf_counter()
            n = window.steps
            means, nonfinite = window.read()
            if nonfinite:
                raise UserError(f"the loss became non-finite by step {step}; lower --lr")
            csv_log.write({"step": step, "epoch": f"{step * config.batch_size / config.bank_size:.3f}",
                           **{k: f"{v:.6g}" for k, v in means.items()},
                           "total": f"{sum(means.values()):.6g}",
                           "images_per_s": f"{n * config.batch_size / max(now - t_window, 1e-9):.3f}",
                           "data_wait_s": "0.000", "elapsed_s": f"{now - t_start:.1f}"})
            bar.set_postfix(**{k: f"{v:.4f}" for k, v in means.items()})
            t_window = now
            if config.max_minutes is not None and now - t_start >= 60 * config.max_minutes:
                log.info("--max-minutes %g reached after %.0f s", config.max_minutes,
                         now - t_start)
                break
        if step % config.checkpoint_interval == 0 and step != total:
            files_out.save_checkpoint(step, config, net, {"optimizer": opt.state_dict()})
        if config.sample_interval and step % config.sample_interval == 0:
            files_out.save_sample(step, net)
    bar.close()
    files_out.save_checkpoint(step, config, net, {"optimizer": opt.state_dict()})
    files_out.save_sample(step, net)
    path = files_out.save_final(step, config, net)
    return DistillResult(run, path, step, config)
