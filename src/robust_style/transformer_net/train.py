"""Train one style network per artwork (Johnson et al. 2016), or one for several.

One artwork and a folder of photos in, one style network out. Several artworks give one
multi-style network (Dumoulin et al. 2017: shared convolutions, a scale and shift per
style in every instance norm); each step trains one style, in turn (step ``i`` trains
style ``i mod n``, so a resumed run continues the same schedule). With ``norms_only``
(``robust-style adapt``) only the instance norms of the ``init_from`` network learn, a
new artwork in a fraction of a full run's time (Dumoulin et al., Section 4). The loss is the
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

The pieces: :mod:`.runtime` (processes, device, precision), :mod:`.data` (photos and
their resumable order), :mod:`.weighting` (loss weights), :mod:`.step` (one step, its
channels_last layout and torch.compile; extra loss terms plug in there),
:mod:`.run_files` (checkpoints, samples, ``log.csv``, resuming, the style model).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from robust_style import __version__
from robust_style.errors import UserError
from robust_style.fileio import sha256_file
from robust_style.imageio import load_rgb
from robust_style.perceptual import PerceptualLoss, build_loss_network
from robust_style.perceptual.backbones import backbone_spec
from robust_style.perceptual.weights import file_sha256, resolve_backbone
from robust_style.transformer_net.arch import ARCH_PRESETS
from robust_style.transformer_net.artifact import STYLE_MODEL_FILE, latest_checkpoint
from robust_style.transformer_net.config import TrainConfig
from robust_style.transformer_net.data import (
    ImageFolderDataset,
    StepSampler,
    find_images,
    load_image_tensor,
    make_loader,
)
from robust_style.transformer_net.init_from import load_initial_net
from robust_style.transformer_net.model import TransformerNet, make_multistyle, norm_keys, set_style
from robust_style.transformer_net.run_files import (
    CsvLog,
    LossWindow,
    RunFiles,
    check_same_inputs,
    load_resume_state,
    log_fields,
    merge_resume_config,
    set_rng,
    tensor_to_image,
)
from robust_style.transformer_net.runtime import (
    DistContext,
    broadcast_from_main,
    resolve_precision,
    select_device,
    setup_distributed,
    teardown_distributed,
)
from robust_style.transformer_net.step import (
    LossTerm,
    TrainStep,
    compile_step,
    to_channels_last,
    wants_compile,
)
from robust_style.transformer_net.temporal import TemporalConfig, TemporalTerm
from robust_style.transformer_net.weighting import (
    balance_weights,
    loss_weights,
    needs_balancing,
    with_default_weights,
)

__all__ = ["train", "TrainResult", "merge_resume_config", "select_device"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    style_model: Path
    steps: int
    config: TrainConfig


def train(config: TrainConfig, *, resume: bool = False,
          overrides: dict[str, Any] | None = None,
          extra_terms: Sequence[LossTerm] = (), progress: bool = True) -> TrainResult:
    """Train (or, with ``resume``, continue) a style network. See the module docstring.

    With ``resume``, the run's newest checkpoint gives the config; ``overrides`` (the
    options given again, e.g. a larger ``max_steps``) are applied on top of it.
    ``extra_terms`` are added to every step's loss (:class:`~.step.LossTerm`).
    ``progress``: draw the progress bar (``robust-style -q`` turns it off).
    """
    run = Path(config.out)
    state: dict[str, Any] | None = None
    if resume:
        state = load_resume_state(run)
        config = merge_resume_config(state["train_config"], overrides or {})
    elif latest_checkpoint(run) is not None or (run / STYLE_MODEL_FILE).exists():
        raise UserError(f"{run} already holds a run; add --resume to continue it, "
                        "or choose a new --out")

    if config.temporal_weight > 0:  # Wang et al. 2020, compound regularisation
        extra_terms = (*extra_terms, TemporalTerm(TemporalConfig(config.temporal_weight)))
    dctx = setup_distributed(config.device)
    try:
        return _Trainer(config, state, dctx, extra_terms).run(progress)
    finally:
        teardown_distributed(dctx)


class _Trainer:
    """One run, set up in the order a reader needs it: inputs, model, files, loop."""

    def __init__(self, config: TrainConfig, state: dict[str, Any] | None, dctx: DistContext,
                 extra_terms: Sequence[LossTerm]) -> None:
        self.state, self.dctx = state, dctx
        self.device = select_device(config.device, dctx.local_rank, distributed=dctx.enabled)
        config = config.replace(precision=resolve_precision(config.precision, self.device))
        self.arch, weights_path = resolve_backbone(config.backbone, config.backbone_weights)
        spec = backbone_spec(self.arch)
        if spec.needs_weights and weights_path is None:
            raise UserError(f"backbone {self.arch} needs --backbone-weights FILE "
                            f"(or a registry name: robust-style weights list)")
        style_paths = [Path(p) for p in config.style_images]
        for style_path in style_paths:
            if not style_path.is_file():
                raise UserError(f"style image not found: {style_path}")
        self.styles = [p.stem for p in style_paths] if len(style_paths) > 1 else []
        if len(set(self.styles)) != len(self.styles):
            raise UserError("two --style images have the same file name; each style is "
                            "named after its file, so rename one")
        style_sha = ",".join(sha256_file(p) for p in style_paths)
        backbone_sha = file_sha256(weights_path) if weights_path else ""
        if state is not None:
            check_same_inputs(state, style_paths[0], style_sha, backbone_sha)
        self.config = config = with_default_weights(config, self.arch)
        log.info("training on %s, precision %s", self.device, config.precision)

        files = find_images(config.content)
        sample_path = Path(config.sample_image) if config.sample_image else _pick_sample(files)
        self.dataset = ImageFolderDataset(files, config.image_size, min_images=1)
        self.per_step = config.batch_size * dctx.world
        self.total = config.max_steps or math.ceil(config.epochs * len(self.dataset)
                                                   / self.per_step)
        self.start = int(state["step"]) if state is not None else 0
        if self.start >= self.total:
            raise UserError(f"the run is already at step {self.start} of {self.total}; pass a "
                            "larger --max-steps (or --epochs) to continue it")

        torch.manual_seed(config.seed + dctx.rank)
        random.seed(config.seed + dctx.rank)
        self._build_model(weights_path, style_paths, spec.style_layers, spec.content_layer,
                          extra_terms)
        sample_x = (load_image_tensor(sample_path, max(config.image_size, 256)).to(self.device)
                    if sample_path is not None else None)
        meta: dict[str, Any] = {
            "name": config.name or (f"{len(self.styles)}-styles" if self.styles
                                    else style_paths[0].stem),
            "backbone": config.backbone,
            "backbone_arch": self.arch, "backbone_weights": str(weights_path or ""),
            "backbone_sha256": backbone_sha,
            "style_image": ", ".join(str(p) for p in style_paths),
            "style_image_sha256": style_sha, "package_version": __version__,
            "sample_image": str(sample_path or ""), "precision": config.precision,
        }
        if self.styles:
            meta["styles"] = self.styles
            meta["style_images"] = [str(p) for p in style_paths]
        self.files = RunFiles(Path(config.out), meta, config.keep_checkpoints, sample_x,
                              [tensor_to_image(img) for img in self.style_imgs])

    def _build_model(self, weights_path: Path | None, style_paths: Sequence[Path],
                     default_style_layers: Sequence[str], default_content_layer: str,
                     extra_terms: Sequence[LossTerm]) -> None:
        config, device, state = self.config, self.device, self.state
        loss_net = build_loss_network(self.arch, weights_path, pooling=config.pooling,
                                      trust=config.trust_checkpoint, device=device)
        self.style_imgs = [load_image_tensor(p, config.style_size or config.image_size).to(device)
                           for p in style_paths]
        # Each artwork's Gram matrices are computed here, once (also for `auto` weights).
        self.criteria = [PerceptualLoss(
            loss_net, img, loss_weights(config), tuple(config.style_layers or default_style_layers),
            config.content_layer or default_content_layer) for img in self.style_imgs]
        self.criterion = self.criteria[0]
        if config.init_from and state is None:  # fine-tuning: start from its weights
            # A multi-style base starts every norm at the mean of its styles.
            self.net = load_initial_net(config.init_from, trust=config.trust_checkpoint,
                                        mix="mean").to(device)
            net_config = self.net.config
            # The preset it is, up to widths and block count (kept as overrides).
            arch = next((n for n, p in ARCH_PRESETS.items() if p.replace(
                channels=net_config.channels, num_residual=net_config.num_residual) ==
                net_config), None)
            if arch is None:
                raise UserError(f"--init-from {config.init_from}: its architecture is no "
                                "preset's (robust-style train --help lists them)")
            self.config = config = config.replace(arch=arch, net_channels=net_config.channels,
                                                  net_residual=net_config.num_residual)
        else:
            self.net = TransformerNet(config.net_config()).to(device)
        if self.styles:
            make_multistyle(self.net, len(self.styles))
        if config.channels_last:
            to_channels_last(self.net, loss_net)
        if config.norms_only:  # adapt: every convolution stays the base's, bit for bit
            norms = set(norm_keys(self.net))
            for key, param in self.net.named_parameters():
                param.requires_grad_(key in norms)
        opt = torch.optim.Adam([p for p in self.net.parameters() if p.requires_grad],
                               lr=config.lr)
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
        if state is not None:
            self.net.load_state_dict(state["state_dict"])
            opt.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            set_rng(state.get("rng", {}))
            log.info("resumed %s at step %d", state["path"], self.start)
        model: torch.nn.Module = self.net
        if self.dctx.enabled:
            model = DistributedDataParallel(
                self.net, device_ids=[device.index] if device.type == "cuda" else None)
        self.step_fn = TrainStep(model, self.criterion, opt, self.scaler, device,
                                 config.precision, extra_terms,
                                 channels_last=config.channels_last)
        if wants_compile(config.compile, device):
            compile_step(self.step_fn)

    def _loader(self) -> tuple[StepSampler, DataLoader]:
        config, state = self.config, self.state
        seen = int(state.get("samples_seen", self.start * self.per_step)) if state else 0
        sampler = StepSampler(len(self.dataset), config.batch_size, seed=config.seed,
                              start_step=self.start, total_steps=self.total,
                              rank=self.dctx.rank, world_size=self.dctx.world, start_slot=seen)
        return sampler, make_loader(self.dataset, sampler, config.batch_size, config.workers,
                                    pin_memory=self.device.type == "cuda")

    def run(self, progress: bool = True) -> TrainResult:
        config, dctx = self.config, self.dctx
        sampler, loader = self._loader()
        files = self.files
        csv_log: CsvLog | None = None
        if dctx.main:
            files.prepare()
            csv_log = CsvLog(files.run / "log.csv", log_fields(self.step_fn.terms),
                             self.start if self.state is not None else None)
        window = LossWindow(self.step_fn.terms, self.device)
        t_start = t_window = time.perf_counter()
        bar = tqdm(total=self.total, initial=self.start, disable=not (dctx.main and progress), unit="step",
                   desc=f"train {files.meta['name']}", dynamic_ncols=True, mininterval=1.0)
        self.net.train()
        step = self.start
        waited = 0.0  # seconds spent waiting for batches since the last log row
        t_ready = time.perf_counter()
        for batch in loader:
            waited += time.perf_counter() - t_ready
            if step == self.start and needs_balancing(config):
                config = self.config = balance_weights(
                    config, self.criterion, self.net, self.step_fn.to_device(batch), dctx,
                    self.device)
                for criterion in self.criteria:  # the same weights for every style
                    criterion.weights = self.criterion.weights
            if self.styles:  # one style a step, in turn
                set_style(self.net, step % len(self.styles))
                self.step_fn.criterion = self.criteria[step % len(self.styles)]
            window.add(self.step_fn(batch))
            step += 1
            bar.update(1)
            if step % config.log_interval == 0 or step == self.total:
                now = time.perf_counter()
                n = window.steps
                means, nonfinite = window.read(dctx.enabled)  # the interval's one host sync
                self._stop_if(nonfinite, step)
                if csv_log is not None:
                    row = {"step": step,
                           "epoch": f"{sampler.slots_before(step) / len(self.dataset):.3f}",
                           **{k: f"{v:.6g}" for k, v in means.items()},
                           "total": f"{sum(means.values()):.6g}",
                           "images_per_s": f"{n * self.per_step / max(now - t_window, 1e-9):.3f}",
                           "data_wait_s": f"{waited:.3f}",
                           "elapsed_s": f"{now - t_start:.1f}"}
                    csv_log.write(row)
                    bar.set_postfix(**{k: row[k] for k in means}, img_s=row["images_per_s"])
                t_window, waited = now, 0.0
                if self._out_of_time(now - t_start):
                    break
            if step % config.checkpoint_interval == 0 and step != self.total:
                # Never checkpoint weights a non-finite loss has reached (all ranks check).
                self._stop_if(window.any_nonfinite(dctx.enabled), step)
                if dctx.main:
                    self._save_checkpoint(step, sampler)
            if dctx.main and config.sample_interval and step % config.sample_interval == 0:
                files.save_sample(step, self.net)
            t_ready = time.perf_counter()
        bar.close()
        result_path = files.run / STYLE_MODEL_FILE
        if dctx.main:
            self._save_checkpoint(step, sampler)
            files.save_sample(step, self.net)
            files.save_final(step, config, self.net)
        if dctx.enabled:
            torch.distributed.barrier()
        return TrainResult(files.run, result_path, step, config)

    def _out_of_time(self, elapsed_s: float) -> bool:
        """``--max-minutes`` reached (rank 0's clock decides for every rank)."""
        if self.config.max_minutes is None:
            return False
        flag = [1.0 if elapsed_s >= 60 * self.config.max_minutes else 0.0]
        if broadcast_from_main(flag, self.dctx, self.device)[0] > 0:
            log.info("--max-minutes %g reached after %.0f s", self.config.max_minutes, elapsed_s)
            return True
        return False

    def _stop_if(self, nonfinite: bool, step: int) -> None:
        if nonfinite and self.config.precision != "fp16":  # fp16: the grad scaler skips them
            raise UserError(f"the loss became non-finite by step {step}; lower --lr or the "
                            "loss weights, or use --precision fp32")

    def _save_checkpoint(self, step: int, sampler: StepSampler) -> None:
        self.files.save_checkpoint(step, self.config, self.net, {
            "optimizer": self.step_fn.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "samples_seen": sampler.slots_before(step)})


def _pick_sample(files: list[Path]) -> Path | None:
    """Hold the last decodable photo out of training as the sample (removed from ``files``).

    With fewer than 3 photos nothing is held out: the sample is also a training photo.
    """
    for candidate in reversed(files):
        try:
            load_rgb(candidate)
        except Exception:
            continue
        if len(files) >= 3:
            files.remove(candidate)
            log.info("held-out sample photo: %s", candidate)
        else:
            log.warning("fewer than 3 photos: the sample %s is also a training photo", candidate)
        return candidate
    return None
