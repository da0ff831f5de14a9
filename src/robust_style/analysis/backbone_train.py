"""Adversarial training of a ResNet-50 loss network with MadryLab's ``robustness``.

For users who want a robust loss network for their own domain (Engstrom et al. 2019,
"Adversarial robustness as a prior for learned representations"; used as a style loss
by Nakano 2019). The image folder has the ``torchvision.datasets.ImageFolder`` layout
(one sub-folder per class). Training is ``robustness.train.train_model`` itself: PGD
examples in the L2 or L∞ ball (``robustness``' own attacker and step classes) and SGD
on them, on the CPU through :mod:`robust_style.analysis.robustness_compat`.

Choices, and why:

* **The 1000-way ImageNet head is kept.** Class *i* of the folder is logit *i*; the
  other logits are never a target. The checkpoint then has exactly the layout of the
  published robust ImageNet ResNet-50s, so it loads wherever those load — as a
  ``robust-resnet50`` backbone and through ``robustness``' own ``make_and_restore_model``
  with the ImageNet dataset — and ``--init`` can start from one of them (fine-tuning a
  robust ImageNet network to a domain is the realistic use; training from scratch on a
  small folder gives a weak network).
* **A weights-only copy is written.** ``train_model`` saves with ``pickle_module=dill``,
  together with optimizer and schedule state (twice the size). With the settings used
  here those files happen to hold only tensors and numbers, so the project's safe loader
  reads them too (checked with robustness 1.2.1.post2), but that is not guaranteed (a
  ``LambdaLR`` schedule pickles a function). :func:`train_backbone` therefore re-saves
  ``{"model": state_dict, "epoch": n}`` (the same ``module.model.*`` /
  ``module.attacker.model.*`` / ``module.normalizer.*`` keys) as ``robust-resnet50.pt``
  and checks that it loads with :func:`robust_style.perceptual.build_loss_network`.
  The library's own files (``checkpoint.pt.latest``, ``checkpoint.pt.best``,
  ``<epoch>_checkpoint.pt``) stay beside it, for resuming with ``robustness``.
* **Validation** uses ``val_dir`` if given, else the training folder without
  augmentation (a fit check, not a generalisation estimate).
"""

from __future__ import annotations

import logging
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch

from robust_style.errors import UserError
from robust_style.fileio import atomic_write
from robust_style.imageio import is_image_file, load_rgb

__all__ = ["BackboneTrainConfig", "TrainResult", "train_backbone", "WEIGHTS_NAME"]

log = logging.getLogger(__name__)

#: File name of the weights-only checkpoint in the output folder.
WEIGHTS_NAME = "robust-resnet50.pt"
_IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class BackboneTrainConfig:
    """One adversarial training run.

    Attributes:
        data_dir: ImageFolder-layout training images (one sub-folder per class).
        out_dir: where checkpoints go.
        constraint: ``"2"`` (L2) or ``"inf"`` (L∞), ``robustness``' names.
        eps: radius of the perturbation ball in [0, 1] pixel units (the published
            ImageNet models: L2 3.0, L∞ 4/255 or 8/255).
        attack_steps: PGD steps per training example (``robustness`` default 7).
        attack_lr: PGD step size; ``None`` = ``2.5 * eps / attack_steps`` (Madry et al.).
        epochs, batch_size, lr, momentum, weight_decay: SGD training settings.
        step_lr: divide the learning rate by 10 every this many epochs (``None``: never).
        image_size: training crop size (ImageNet models: 224).
        val_dir: validation images; ``None`` = ``data_dir`` without augmentation.
        init: a ResNet-50 checkpoint to start from (MadryLab or torchvision layout).
        trust: allow full unpickling of ``init``.
        device: ``"cpu"`` or a CUDA device.
        workers: data-loading worker processes.
        seed: torch seed.
    """

    data_dir: Path
    out_dir: Path
    constraint: str = "2"
    eps: float = 3.0
    attack_steps: int = 7
    attack_lr: float | None = None
    epochs: int = 1
    batch_size: int = 16
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    step_lr: int | None = None
    image_size: int = 224
    val_dir: Path | None = None
    init: Path | None = None
    trust: bool = False
    device: str = "cpu"
    workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.constraint not in ("2", "inf"):
            raise UserError(f"constraint must be '2' (L2) or 'inf' (Linf), not {self.constraint!r}")
        if self.eps <= 0 or self.attack_steps < 1:
            raise UserError("eps must be > 0 and attack steps >= 1")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise UserError("epochs and batch size must be >= 1 and lr > 0")
        if self.image_size < 32:
            raise UserError(f"image size must be at least 32, not {self.image_size}")

    @property
    def step_size(self) -> float:
        return self.attack_lr if self.attack_lr is not None else 2.5 * self.eps / self.attack_steps


@dataclass(frozen=True)
class TrainResult:
    weights: Path  # the weights-only robust-resnet50 checkpoint
    classes: tuple[str, ...]
    library_checkpoint: Path  # robustness' own (dill-pickled) latest checkpoint


def _loaders(cfg: BackboneTrainConfig) -> tuple[torch.utils.data.DataLoader,
                                                 torch.utils.data.DataLoader, list[str]]:
    from torchvision import datasets, transforms

    def folder(path: Path, tf: transforms.Compose) -> datasets.ImageFolder:
        if not path.is_dir():
            raise UserError(f"image folder not found: {path}")
        try:
            return datasets.ImageFolder(str(path), transform=tf, is_valid_file=is_image_file,
                                        loader=load_rgb)
        except (FileNotFoundError, RuntimeError) as exc:
            raise UserError(f"{path} is not an ImageFolder (one sub-folder of images per "
                            f"class): {exc}") from exc

    s = cfg.image_size
    train_tf = transforms.Compose([
        transforms.RandomResizedCrop(s, scale=(0.35, 1.0)), transforms.RandomHorizontalFlip(),
        transforms.ToTensor()])
    val_tf = transforms.Compose([transforms.Resize(s), transforms.CenterCrop(s),
                                 transforms.ToTensor()])
    train_set = folder(cfg.data_dir, train_tf)
    val_set = folder(cfg.val_dir or cfg.data_dir, val_tf)
    classes = list(train_set.classes)
    if len(classes) < 2:
        raise UserError(f"{cfg.data_dir} has {len(classes)} class folder(s); need at least 2")
    if len(classes) > _IMAGENET_CLASSES:
        raise UserError(f"{len(classes)} classes; at most {_IMAGENET_CLASSES} are supported")
    if val_set.classes != classes:
        raise UserError(f"validation classes {val_set.classes} differ from {classes}")
    gen = torch.Generator().manual_seed(cfg.seed)
    train = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True,
                                        num_workers=cfg.workers, generator=gen)
    val = torch.utils.data.DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False,
                                      num_workers=cfg.workers)
    return train, val, classes


def _save_weights_only(state_dict: dict[str, torch.Tensor], epoch: int, path: Path) -> None:
    payload = {"model": {k: v.detach().cpu() for k, v in state_dict.items()}, "epoch": epoch}
    with atomic_write(path) as fh:
        torch.save(payload, fh)


def train_backbone(cfg: BackboneTrainConfig) -> TrainResult:
    """Adversarially train (or fine-tune) a ResNet-50 with ``robustness.train.train_model``.

    Returns the weights-only checkpoint, already checked to load as ``robust-resnet50``.
    """
    from robust_style.analysis.robustness_compat import import_robustness, on_device
    from robust_style.perceptual import build_loss_network
    from robust_style.perceptual.checkpoint import (
        extract_resnet50_state_dict,
        load_checkpoint,
        load_state_dict_strict,
    )

    rb = import_robustness()
    torch.manual_seed(cfg.seed)
    train_loader, val_loader, classes = _loaders(cfg)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    dataset = rb.datasets.ImageNet(str(cfg.data_dir))  # mean/std and the 1000-way ResNet-50
    with on_device(cfg.device):
        model, _ = rb.model_utils.make_and_restore_model(arch="resnet50", dataset=dataset)
        if cfg.init is not None:
            sd = extract_resnet50_state_dict(load_checkpoint(cfg.init, trust=cfg.trust),
                                             str(cfg.init))
            load_state_dict_strict(model.model, sd, str(cfg.init))
            log.info("initialised from %s", cfg.init)
        args = rb.Parameters({
            "out_dir": str(cfg.out_dir), "adv_train": 1, "adv_eval": 0,
            "epochs": cfg.epochs, "lr": cfg.lr, "momentum": cfg.momentum,
            "weight_decay": cfg.weight_decay, "step_lr": cfg.step_lr or cfg.epochs + 1,
            "log_iters": 1, "save_ckpt_iters": -1,
            "constraint": cfg.constraint, "eps": cfg.eps, "attack_lr": cfg.step_size,
            "attack_steps": cfg.attack_steps, "random_start": 1, "use_best": 1,
            "random_restarts": 0, "mixed_precision": 0,
        })
        args = rb.defaults.check_and_fill_args(args, rb.defaults.TRAINING_ARGS,
                                               type(dataset))
        args = rb.defaults.check_and_fill_args(args, rb.defaults.PGD_ARGS, type(dataset))
        log.info("adversarial training: L%s eps=%g, %d PGD steps of %g, %d epoch(s), %d "
                 "classes, %d training images", cfg.constraint, cfg.eps, cfg.attack_steps,
                 cfg.step_size, cfg.epochs, len(classes),
                 len(cast(Sized, train_loader.dataset)))  # an ImageFolder
        trained = rb.train.train_model(args, model, (train_loader, val_loader))
    weights = cfg.out_dir / WEIGHTS_NAME
    _save_weights_only(trained.state_dict(), cfg.epochs, weights)
    build_loss_network("robust-resnet50", weights)  # must load with the project's loader
    return TrainResult(weights, tuple(classes), cfg.out_dir / "checkpoint.pt.latest")
