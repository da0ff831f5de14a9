"""Train one style network per artwork (Johnson et al. 2016).

One artwork and a folder of photos in, one style network out. The loss is the
perceptual loss of a frozen loss network (:mod:`robust_style.perceptual`); by default
an adversarially robust ResNet-50 (Nakano 2019), or the VGG-16 Johnson et al. used.

Run layout (``--out RUN``)::

    RUN/config.json                 the training config (human-readable copy)
    RUN/log.csv                     losses every --log-interval steps
    RUN/checkpoints/step-*.pt       full training state, written atomically
    RUN/samples/step-*.png          the held-out photo stylised (+ ``-grid.png``)
    RUN/style_model.pt              the final style network (what ``export`` reads)

Several GPUs: run the same command under ``torchrun``; it trains with
DistributedDataParallel (NCCL on CUDA, gloo on CPU), each process taking
``--batch-size`` images per step, rank 0 writing files.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from robust_style import __version__
from robust_style.errors import UserError
from robust_style.fileio import atomic_write, atomic_write_text
from robust_style.perceptual import LossWeights, PerceptualLoss, build_loss_network
from robust_style.perceptual.backbones import backbone_spec
from robust_style.perceptual.checkpoint import load_checkpoint
from robust_style.perceptual.weights import file_sha256, resolve_backbone
from robust_style.transformer_net.artifact import (
    CHECKPOINT_DIR,
    STYLE_MODEL_FILE,
    latest_checkpoint,
    save_style_model,
)
from robust_style.transformer_net.config import AUTO, AUTO_RATIOS, DEFAULT_LOSS_WEIGHTS, TrainConfig
from robust_style.transformer_net.data import (
    ImageFolderDataset,
    find_images,
    load_image_tensor,
    load_rgb,
)
from robust_style.transformer_net.model import TransformerNet, TransformerNetConfig
from robust_style.transformer_net.sampler import StepSampler
from robust_style.transformer_net.samples import make_grid, save_image_atomic, tensor_to_image

__all__ = ["train", "TrainResult", "select_device"]

log = logging.getLogger(__name__)

LOG_FIELDS = ("step", "epoch", "content", "style", "tv", "total", "images_per_s", "elapsed_s")


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    style_model: Path
    steps: int
    config: TrainConfig


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_pref: str) -> _Dist:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_pref != "cpu"
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def select_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
        return torch.device(pref if ":" in pref else f"cuda:{local_rank}")
    if pref == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps asked for, but MPS is not available")
    return torch.device(pref)


def _autocast(device: torch.device, precision: str) -> Any:
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _resolve_weights(config: TrainConfig, criterion_parts: dict[str, float]) -> TrainConfig:
    """Replace ``auto`` loss weights by numbers balanced on the first batch."""
    c0, s0, t0 = (max(criterion_parts[k], 1e-12) for k in ("content", "style", "tv"))
    rc, rs, rt = AUTO_RATIOS
    balanced = {"content_weight": rc / c0, "style_weight": rs / s0, "tv_weight": rt / t0}
    changes = {k: float(f"{v:.4g}") for k, v in balanced.items() if getattr(config, k) == AUTO}
    log.info("auto loss weights from the first batch: %s", changes)
    return config.replace(**changes)


def _with_default_weights(config: TrainConfig, arch: str) -> TrainConfig:
    defaults = DEFAULT_LOSS_WEIGHTS[arch]
    changes = {}
    for key, default in zip(("content_weight", "style_weight", "tv_weight"), defaults,
                            strict=True):
        if getattr(config, key) is None:
            changes[key] = default
    return config.replace(**changes) if changes else config


class _CsvLog:
    """Appends rows to ``log.csv``; on resume drops rows past the resumed step."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        rows: list[dict[str, str]] = []
        if resume_step is not None and path.is_file():
            with path.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
        with atomic_write(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, LOG_FIELDS).writerow(row)
            fh.flush()


def _load_resume_state(run: Path) -> dict[str, Any]:
    ckpt = latest_checkpoint(run)
    if ckpt is None:
        raise UserError(f"--resume: no checkpoint in {run / CHECKPOINT_DIR}; start without --resume")
    state = load_checkpoint(ckpt)
    if not isinstance(state, dict) or state.get("kind") != "checkpoint":
        raise UserError(f"{ckpt} is not a robust-style training checkpoint")
    state["path"] = ckpt
    return state


def merge_resume_config(saved: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
    """The saved config with the options given again on the command line applied."""
    return TrainConfig.from_dict({**saved, **overrides})


def train(config: TrainConfig, *, resume: bool = False,
          overrides: dict[str, Any] | None = None) -> TrainResult:
    """Train (or, with ``resume``, continue) a style network. See the module docstring.

    With ``resume``, the run's newest checkpoint gives the config; ``overrides`` (the
    options given again, e.g. a larger ``max_steps``) are applied on top of it.
    """
    run = Path(config.out)
    state: dict[str, Any] | None = None
    if resume:
        state = _load_resume_state(run)
        config = merge_resume_config(state["train_config"], overrides or {})
    elif latest_checkpoint(run) is not None or (run / STYLE_MODEL_FILE).exists():
        raise UserError(f"{run} already holds a run; add --resume to continue it, "
                        "or choose a new --out")

    dctx = _setup_distributed(config.device)
    try:
        return _train(config, state, dctx)
    finally:
        if dctx.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _train(config: TrainConfig, state: dict[str, Any] | None, dctx: _Dist) -> TrainResult:
    run = Path(config.out)
    device = select_device(config.device, dctx.local_rank)
    if dctx.enabled and device.type == "cuda":
        # One GPU per process: torchrun's LOCAL_RANK decides, whatever cuda:N was given.
        device = torch.device("cuda", dctx.local_rank)
        torch.cuda.set_device(device)
    if config.precision == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16 needs CUDA; on CPU use bf16 or fp32")
    arch, weights_path = resolve_backbone(config.backbone, config.backbone_weights)
    spec = backbone_spec(arch)
    if spec.needs_weights and weights_path is None:
        raise UserError(f"backbone {arch} needs --backbone-weights FILE "
                        f"(or a registry name: robust-style weights list)")
    style_path = Path(config.style)
    if not style_path.is_file():
        raise UserError(f"style image not found: {style_path}")
    style_sha = file_sha256(style_path)
    backbone_sha = file_sha256(weights_path) if weights_path else ""
    if state is not None:
        meta = state.get("meta", {})
        if meta.get("style_image_sha256") not in (None, "", style_sha):
            raise UserError(f"the style image {style_path} changed since the checkpoint was "
                            "written; resuming would mix two styles. Start a new --out")
        if meta.get("backbone_sha256") not in (None, "", backbone_sha):
            raise UserError("the backbone weights changed since the checkpoint was written; "
                            "start a new --out")
    config = _with_default_weights(config, arch)

    files = find_images(config.content)
    sample_path = Path(config.sample_image) if config.sample_image else None
    if sample_path is None:
        sample_path = _pick_sample(files)
    dataset = ImageFolderDataset(files, config.image_size, min_images=1)
    per_step = config.batch_size * dctx.world
    total = config.max_steps or math.ceil(config.epochs * len(dataset) / per_step)
    start = int(state["step"]) if state is not None else 0
    seen = int(state.get("samples_seen", start * per_step)) if state is not None else 0
    if start >= total:
        raise UserError(f"the run is already at step {start} of {total}; pass a larger "
                        "--max-steps (or --epochs) to continue it")

    seed = config.seed
    torch.manual_seed(seed + dctx.rank)
    random.seed(seed + dctx.rank)
    loss_net = build_loss_network(arch, weights_path, pooling=config.pooling,
                                  trust=config.trust_checkpoint, device=device)
    style_img = load_image_tensor(style_path, config.style_size or config.image_size).to(device)
    style_layers = tuple(config.style_layers or spec.style_layers)
    content_layer = config.content_layer or spec.content_layer

    net = TransformerNet(TransformerNetConfig(config.net_channels, config.net_residual)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    if state is not None:
        net.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        _set_rng(state.get("rng", {}), dctx.rank)
        log.info("resumed %s at step %d", state["path"], start)

    sampler = StepSampler(len(dataset), config.batch_size, seed=seed, start_step=start,
                          total_steps=total, rank=dctx.rank, world_size=dctx.world,
                          start_slot=seen)
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler,
                        num_workers=config.workers, pin_memory=device.type == "cuda",
                        persistent_workers=False, drop_last=True)

    criterion: PerceptualLoss | None = None
    if AUTO not in (config.content_weight, config.style_weight, config.tv_weight):
        criterion = _criterion(loss_net, style_img, config, style_layers, content_layer)
    model: torch.nn.Module = net
    if dctx.enabled:
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                        else None)

    if dctx.main:
        (run / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
        for stale in (run / CHECKPOINT_DIR).glob(".step-*.tmp"):  # from a killed write
            stale.unlink(missing_ok=True)
        (run / "samples").mkdir(exist_ok=True)
        csv_log = _CsvLog(run / "log.csv", start if state is not None else None)
    sample_x = load_image_tensor(sample_path, max(config.image_size, 256)).to(device) \
        if sample_path is not None else None
    style_pil = tensor_to_image(style_img)

    meta_base = {"name": config.name or style_path.stem, "backbone": config.backbone,
                 "backbone_arch": arch, "backbone_weights": str(weights_path or ""),
                 "backbone_sha256": backbone_sha, "style_image": str(style_path),
                 "style_image_sha256": style_sha, "package_version": __version__,
                 "sample_image": str(sample_path or "")}

    def save_checkpoint(step: int) -> Path:
        meta = {**meta_base, "steps": step, "config": config.to_dict(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        path = run / CHECKPOINT_DIR / f"step-{step:08d}.pt"
        save_style_model(path, net, meta, kind="checkpoint", extra={
            "optimizer": opt.state_dict(), "scaler": scaler.state_dict(), "step": step,
            "samples_seen": sampler.slots_before(step),
            "rng": _get_rng(), "train_config": config.to_dict()})
        for old in sorted((run / CHECKPOINT_DIR).glob("step-*.pt"))[:-config.keep_checkpoints]:
            old.unlink(missing_ok=True)
        return path

    def save_sample(step: int) -> None:
        if sample_x is None:
            return
        with torch.no_grad():
            y = net(sample_x)
        out = tensor_to_image(y)
        save_image_atomic(out, run / "samples" / f"step-{step:08d}.png")
        grid = make_grid([tensor_to_image(sample_x), style_pil, out])
        save_image_atomic(grid, run / "samples" / f"step-{step:08d}-grid.png")

    step = start
    t_start = time.perf_counter()
    window: dict[str, float] = {"content": 0.0, "style": 0.0, "tv": 0.0, "n": 0}
    t_window = time.perf_counter()
    bar = tqdm(total=total, initial=start, disable=not dctx.main, unit="step",
               desc=f"train {meta_base['name']}", dynamic_ncols=True, mininterval=1.0)
    net.train()
    for batch in loader:
        x = batch.to(device, non_blocking=True)
        if criterion is None:  # auto weights: balance on the first batch, same on all ranks
            config = _balance(config, loss_net, style_img, style_layers, content_layer, net, x, dctx)
            criterion = _criterion(loss_net, style_img, config, style_layers, content_layer)
        with _autocast(device, config.precision):
            y = model(x)
            loss, parts = criterion(y.float() if config.precision == "fp32" else y, x)
        bad = torch.tensor(0.0 if torch.isfinite(loss) else 1.0, device=device)
        if dctx.enabled:  # every rank stops together instead of hanging in all-reduce
            dist.all_reduce(bad)
        if bad.item() > 0 and config.precision != "fp16":  # fp16: the grad scaler skips it
            raise UserError(f"loss became non-finite at step {step + 1}; lower --lr or the "
                            "loss weights, or use fp32")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        step += 1
        for k in ("content", "style", "tv"):
            window[k] += float(parts[k].detach())
        window["n"] += 1
        if dctx.main:
            bar.update(1)
            if step % config.log_interval == 0 or step == total:
                now = time.perf_counter()
                n = window["n"]
                row = {"step": step, "epoch": f"{sampler.slots_before(step) / len(dataset):.3f}",
                       **{k: f"{window[k] / n:.6g}" for k in ("content", "style", "tv")},
                       "total": f"{sum(window[k] for k in ('content', 'style', 'tv')) / n:.6g}",
                       "images_per_s": f"{n * per_step / max(now - t_window, 1e-9):.3f}",
                       "elapsed_s": f"{now - t_start:.1f}"}
                csv_log.write(row)
                bar.set_postfix(content=row["content"], style=row["style"], tv=row["tv"],
                                img_s=row["images_per_s"])
                window = {"content": 0.0, "style": 0.0, "tv": 0.0, "n": 0}
                t_window = now
            if config.sample_interval and step % config.sample_interval == 0:
                save_sample(step)
            if step % config.checkpoint_interval == 0 and step != total:
                save_checkpoint(step)
    bar.close()
    result_path = run / STYLE_MODEL_FILE
    if dctx.main:
        save_checkpoint(step)
        save_sample(step)
        meta = {**meta_base, "steps": step, "config": config.to_dict(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        save_style_model(result_path, net, meta)
        atomic_write_text(run / "config.json", config.to_json())
        log.info("trained %d steps; style model: %s", step, result_path)
    if dctx.enabled:
        dist.barrier()
    return TrainResult(run, result_path, step, config)


def _pick_sample(files: list[Path]) -> Path | None:
    """Hold the last decodable photo out of training as the sample (removed from ``files``).

    With fewer than 3 photos nothing is held out: the sample is also a training photo.
    """
    for candidate in reversed(files):
        try:
            load_rgb(candidate)
        except Exception:  # noqa: BLE001 - corrupt files are skipped by the dataset too
            continue
        if len(files) >= 3:
            files.remove(candidate)
            log.info("held-out sample photo: %s", candidate)
        else:
            log.warning("fewer than 3 photos: the sample %s is also a training photo", candidate)
        return candidate
    return None


def _criterion(loss_net: torch.nn.Module, style_img: torch.Tensor, config: TrainConfig,
               style_layers: tuple[str, ...], content_layer: str) -> PerceptualLoss:
    weights = LossWeights(float(config.content_weight), float(config.style_weight),  # type: ignore[arg-type]
                          float(config.tv_weight))  # type: ignore[arg-type]
    return PerceptualLoss(loss_net, style_img, weights, style_layers, content_layer)


def _balance(config: TrainConfig, loss_net: torch.nn.Module, style_img: torch.Tensor,
             style_layers: tuple[str, ...], content_layer: str, net: torch.nn.Module,
             x: torch.Tensor, dctx: _Dist) -> TrainConfig:
    unit = config.replace(content_weight=1.0, style_weight=1.0, tv_weight=1.0)
    probe = _criterion(loss_net, style_img, unit, style_layers, content_layer)
    with torch.no_grad():
        _, parts = probe(net(x), x)
    values = torch.tensor([float(parts[k]) for k in ("content", "style", "tv")],
                          dtype=torch.float64)
    if dctx.enabled:  # every rank must use rank 0's weights
        dist.broadcast(values, src=0)
    return _resolve_weights(config, dict(zip(("content", "style", "tv"), values.tolist(),
                                             strict=True)))


def _get_rng() -> dict[str, Any]:
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _set_rng(rng: dict[str, Any], rank: int) -> None:
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "python" in rng:
        random.setstate(_as_tuple(rng["python"]))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _as_tuple(obj: Any) -> Any:
    return tuple(_as_tuple(o) for o in obj) if isinstance(obj, (list, tuple)) else obj
