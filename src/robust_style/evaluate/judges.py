"""Judges of a stylised image, independent of the loss network a model was trained with.

* **Style distance** (:class:`GramJudge`): how far the result's Gram matrices are from the
  artwork's, under a fixed ImageNet network. With the Oxford VGG-19 at Gatys et al.'s
  layers ``relu1_1 … relu5_1`` (Gatys, Ecker & Bethge, CVPR 2016), and, so that no
  conclusion rests on one network, under torchvision's AlexNet at ``relu1 … relu5``.
  Scale normalisation, so numbers compare across image sizes and layers:

  1. the result and the artwork are both resized to the same shorter side
     (``judge_size``, default 256) before their features are taken: a Gram matrix
     describes texture *at a scale*, and a texture seen at another scale is another one;
  2. Gram matrices are divided by ``C·H·W`` (Johnson et al. 2016), so they are means over
     positions, independent of the number of pixels;
  3. per layer the distance is relative, ``‖G(result) − G(art)‖_F / ‖G(art)‖_F``, and the
     judge's score is the mean over layers, so every layer counts alike whatever its
     activation scale (the Caffe VGG-19 sees 0..255 input, AlexNet ImageNet-normalised).

  0 means the same texture statistics as the artwork; a photo left unchanged is
  typically near 1.

* **Content distance** (:class:`LpipsJudge`): LPIPS (Zhang et al., CVPR 2018; AlexNet
  backbone, linear layers v0.1) between the photo and the result, with the maintained
  ``lpips`` package. That package otherwise downloads torchvision's AlexNet at run time;
  here it is built with a random backbone (``pnet_rand=True``: no download) and the
  backbone and linear weights are loaded from files the weights registry checked. 0 means
  the result is the photo.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from robust_style.errors import UserError, first_line
from robust_style.perceptual import LossNetwork, build_loss_network, gram_matrix
from robust_style.perceptual.checkpoint import (
    LPIPS_LIN_CHANNELS,
    check_lpips_lin,
    extract_state_dict,
    load_checkpoint,
)

__all__ = [
    "ALEXNET_LAYERS",
    "GATYS_LAYERS",
    "GramJudge",
    "LpipsJudge",
    "load_alexnet_features",
    "resize_shorter",
]

log = logging.getLogger(__name__)

#: Gatys et al. 2016's style layers of VGG-19.
GATYS_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: AlexNet's five conv-layer ReLUs (the layers LPIPS reads).
ALEXNET_LAYERS = ("relu1", "relu2", "relu3", "relu4", "relu5")


def resize_shorter(image: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, 3, H, W)`` resized (bicubic, antialiased) so its shorter side is ``size``."""
    h, w = image.shape[-2:]
    if min(h, w) == size:
        return image
    scale = size / min(h, w)
    out = F.interpolate(image, size=(max(size, round(h * scale)), max(size, round(w * scale))),
                        mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0)


class GramJudge:
    """Relative Gram-matrix distance to one artwork under a frozen network.

    Args:
        net: the judging network (a :class:`LossNetwork`).
        layers: its layers whose Gram matrices are compared.
        artwork: ``(1, 3, H, W)`` in [0, 1].
        size: shorter side both images are brought to (see the module docstring).
        name: label of the judge in tables (``style_vgg19``, ``style_alexnet``).
    """

    def __init__(self, net: LossNetwork, layers: Sequence[str], artwork: torch.Tensor, *,
                 size: int = 256, name: str = "style") -> None:
        if size < 32:
            raise UserError(f"the judge size must be at least 32 pixels, not {size}")
        self.net, self.layers, self.size, self.name = net, tuple(layers), int(size), name
        device = next(iter(net.buffers())).device
        with torch.no_grad():
            feats = net(resize_shorter(artwork.to(device), self.size), self.layers)
            self.targets = {n: gram_matrix(feats[n])[0] for n in self.layers}
        self.target_norms = {n: float(g.norm()) for n, g in self.targets.items()}

    @property
    def device(self) -> torch.device:
        return next(iter(self.net.buffers())).device

    def layer_distances(self, image: torch.Tensor) -> dict[str, float]:
        """Per layer ``‖G(image) − G(art)‖_F / ‖G(art)‖_F`` for a ``(1, 3, H, W)`` image."""
        with torch.no_grad():
            feats = self.net(resize_shorter(image.to(self.device), self.size), self.layers)
            return {n: float((gram_matrix(feats[n])[0] - self.targets[n]).norm())
                    / max(self.target_norms[n], 1e-12) for n in self.layers}

    def distance(self, image: torch.Tensor) -> float:
        """The judge's score: the mean over layers of :meth:`layer_distances`."""
        d = self.layer_distances(image)
        return sum(d.values()) / len(d)

    @classmethod
    def vgg19(cls, weights: str | Path, artwork: torch.Tensor, *, size: int = 256,
              device: str | torch.device = "cpu") -> GramJudge:
        """The Oxford VGG-19 (Caffe convention) at Gatys et al.'s layers."""
        net = build_loss_network("vgg19-caffe", weights, device=device)
        return cls(net, GATYS_LAYERS, artwork, size=size, name="style_vgg19")

    @classmethod
    def alexnet(cls, weights: str | Path, artwork: torch.Tensor, *, size: int = 256,
                device: str | torch.device = "cpu") -> GramJudge:
        """torchvision's AlexNet at ``relu1 … relu5``."""
        net = build_loss_network("alexnet", weights, device=device)
        return cls(net, ALEXNET_LAYERS, artwork, size=size, name="style_alexnet")


def load_alexnet_features(path: str | Path) -> dict[str, torch.Tensor]:
    """AlexNet ``features`` weights (``0.weight`` … ``10.bias``) from a torchvision
    checkpoint (full model, ``features.*`` keys) or a features-only state dict."""
    sd = extract_state_dict(load_checkpoint(path), str(path))
    if any(k.startswith("features.") for k in sd):
        sd = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
    return sd


class LpipsJudge:
    """LPIPS-alex v0.1 distance, built so it never downloads anything.

    Args:
        alexnet: AlexNet weights (torchvision checkpoint or features-only state dict).
        lin: the LPIPS v0.1 linear layers for AlexNet (``alex.pth``).
    """

    name = "content_lpips"

    def __init__(self, alexnet: str | Path, lin: str | Path, *,
                 device: str | torch.device = "cpu") -> None:
        try:
            import lpips
        except ModuleNotFoundError as exc:
            raise UserError("the LPIPS content judge needs the lpips package: "
                            "pip install 'robust-style[train]'") from exc
        with warnings.catch_warnings():
            # pnet_rand=True calls torchvision's alexnet(pretrained=False): deprecation
            # warnings only, and no download.
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True,
                                verbose=False)
        features = load_alexnet_features(alexnet)
        trunk = {}
        for key in model.net.state_dict():
            _, rest = key.split(".", 1)  # slice1.0.weight -> 0.weight
            if rest not in features:
                raise UserError(f"{alexnet} is not an AlexNet: no {rest!r} tensor")
            trunk[key] = features[rest]
        try:
            model.net.load_state_dict(trunk, strict=True)
        except RuntimeError as exc:
            raise UserError(f"{alexnet} does not fit AlexNet: {first_line(exc)}") from None
        lins = check_lpips_lin(extract_state_dict(load_checkpoint(lin), str(lin)), str(lin))
        for k in range(len(LPIPS_LIN_CHANNELS)):
            getattr(model, f"lin{k}").model[1].weight.data.copy_(lins[f"lin{k}.model.1.weight"])
        self.model = model.eval().to(device)
        for p in self.model.parameters():
            p.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> float:
        """LPIPS between two ``(1, 3, H, W)`` images in [0, 1] of the same size."""
        if a.shape != b.shape:
            raise UserError(f"LPIPS compares images of one size, got {tuple(a.shape)} and "
                            f"{tuple(b.shape)}")
        with torch.no_grad():
            d = self.model(a.to(self.device), b.to(self.device), normalize=True)
        return float(d.flatten()[0])
