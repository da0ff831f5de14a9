"""The image transformation network of Johnson et al. 2016.

"Perceptual losses for real-time style transfer and super-resolution" (ECCV 2016),
with the two changes everyone since has adopted:

* instance normalisation instead of batch normalisation (Ulyanov et al. 2016,
  "Instance normalization: the missing ingredient for fast stylization");
* nearest-neighbour upsampling followed by a convolution instead of transposed
  convolutions, which avoids checkerboard artifacts (Odena et al. 2016,
  "Deconvolution and checkerboard artifacts", Distill).

Convolutions are reflection-padded. Input and output are RGB float in [0, 1], NCHW.
The two stride-2 convolutions need sides divisible by 4, so the input is
replicate-padded up to a multiple of 4 and the output is cropped back: the output has
exactly the input's height and width, odd sizes included. The smallest side accepted is
``MIN_SIDE`` (8 px; the 9x9 reflection padding needs more than 4 px).

**Several styles in one network** (Dumoulin, Shlens and Kudlur, "A learned representation
for artistic style", ICLR 2017): every convolution is shared and each style has its own
instance-norm scale and shift, a :class:`ConditionalInstanceNorm2d` whose ``weight`` and
``bias`` are ``(styles, C)`` stacks of the single-style ``(C,)`` vectors, under the same
state-dict keys. :func:`make_multistyle` turns a network into one, :func:`set_style`
picks the style that runs, and :func:`single_style` gives back an ordinary network whose
norms are one style's rows or a convex blend of them (the paper's style interpolation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robust_style import contract
from robust_style.transformer_net.arch import TransformerNetConfig

__all__ = ["ConditionalInstanceNorm2d", "TransformerNet", "TransformerNetConfig",
           "make_multistyle", "norm_keys", "set_style", "single_style", "style_count"]


def _keep_format(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``y`` in ``like``'s memory format (channels_last stays channels_last)."""
    if like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        return y.contiguous(memory_format=torch.channels_last)
    return y


class _Layers(nn.Sequential):
    """A chain of layers that keeps its input's memory format and dtype through them.

    Two things made a training step do needless copies (docs/training.md, "Speed"):
    ``instance_norm`` returns NCHW even for channels_last input, so every following
    padding ran on NCHW and every convolution converted back to NHWC (and the padding's
    backward took a slow mixed-layout path); and CPU autocast runs ``reflection_pad2d``
    in float32, so under bf16 every layer cast its activations up to float32 for the
    padding and back down for the convolution. Padding only moves values, so it runs
    in its input's dtype here. Outputs are unchanged, and so are fp32 gradients; under
    bf16 the padding's backward now adds the border gradients in bf16.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, nn.ReflectionPad2d) and torch.is_autocast_enabled(x.device.type):
                with torch.autocast(x.device.type, enabled=False):
                    x = layer(x)
            elif isinstance(layer, nn.InstanceNorm2d):
                x = _keep_format(layer(x), x)
            else:
                x = layer(x)
        return x


class _ConvLayer(_Layers):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReflectionPad2d(kernel // 2),
            nn.Conv2d(cin, cout, kernel, stride),
        )


class _ConvNormReLU(_Layers):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            _ConvLayer(cin, cout, kernel, stride),
            nn.InstanceNorm2d(cout, affine=True),
            nn.ReLU(inplace=True),
        )


class _SeparableConvLayer(_Layers):
    """Depthwise ``kernel``² then pointwise 1x1 (Howard et al. 2017, MobileNets)."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__(
            nn.ReflectionPad2d(kernel // 2),
            nn.Conv2d(channels, channels, kernel, groups=channels),
            nn.Conv2d(channels, channels, 1),
        )


class _ResidualBlock(nn.Module):
    """Two conv + IN layers with an identity shortcut (He et al. 2016): dense 3x3 as
    in Johnson et al., or depthwise-separable ``kernel``² (``separable``)."""

    def __init__(self, channels: int, separable: bool = False, kernel: int = 3) -> None:
        super().__init__()

        def conv() -> nn.Module:
            return (_SeparableConvLayer(channels, kernel) if separable
                    else _ConvLayer(channels, channels, kernel))

        self.body = _Layers(
            conv(),
            nn.InstanceNorm2d(channels, affine=True),
            nn.ReLU(inplace=True),
            conv(),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _Upsample(nn.Module):
    """x2 upsampling (nearest by default), then a convolution (Odena et al. 2016)."""

    def __init__(self, cin: int, cout: int, mode: str = "nearest") -> None:
        super().__init__()
        self.mode = mode
        self.conv = _ConvNormReLU(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return self.conv(F.interpolate(x, scale_factor=2.0, mode=self.mode, align_corners=False))


class TransformerNet(nn.Module):
    """Feed-forward style network: ``[0,1]`` RGB NCHW in, ``[0,1]`` RGB out, same size.

    About 1.68M parameters with the default configuration; smaller ones are named in
    :data:`robust_style.transformer_net.arch.ARCH_PRESETS`.
    """

    #: The network downsamples twice by 2; inputs are padded to a multiple of this.
    MULTIPLE = 4
    #: Smallest height or width accepted (see the module docstring).
    MIN_SIDE = contract.MIN_SIDE

    def __init__(self, config: TransformerNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or TransformerNetConfig()
        cfg = self.config
        c1, c2, c3 = cfg.channels
        self.encoder = nn.Sequential(
            _ConvNormReLU(3, c1, cfg.end_kernel),
            _ConvNormReLU(c1, c2, 3, stride=2),
            _ConvNormReLU(c2, c3, 3, stride=2),
        )
        self.residuals = nn.Sequential(*[_ResidualBlock(c3, cfg.separable, cfg.res_kernel)
                                         for _ in range(cfg.num_residual)])
        self.decoder = nn.Sequential(
            _Upsample(c3, c2, cfg.upsample),
            _Upsample(c2, c1, cfg.upsample),
            _ConvLayer(c1, 3, cfg.end_kernel),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        m = self.MULTIPLE
        # Pad bottom/right up to a multiple of 4 (a zero pad when already aligned). No
        # branch on the size, so the ONNX export keeps height and width dynamic.
        # Replicate padding works for any side, even 1 px; the padded rows and columns
        # are cropped away below.
        pad_h = (m - h % m) % m
        pad_w = (m - w % m) % m
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        y = self.decoder(self.residuals(self.encoder(x)))
        # A sigmoid keeps the output in [0, 1] with gradients everywhere (a hard clamp
        # would zero them for saturated pixels during training).
        y = torch.sigmoid(y)
        return y[..., :h, :w]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class ConditionalInstanceNorm2d(nn.InstanceNorm2d):
    """Instance norm with one scale and shift per style (Dumoulin et al. 2017):
    ``weight``/``bias`` are ``(styles, C)``; the row ``style`` is used."""

    def __init__(self, num_features: int, styles: int, eps: float = 1e-5) -> None:
        super().__init__(num_features, eps=eps, affine=True)
        self.weight = nn.Parameter(torch.ones(styles, num_features))
        self.bias = nn.Parameter(torch.zeros(styles, num_features))
        self.style = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.weight[self.style], bias=self.bias[self.style],
                               eps=self.eps)


def norm_keys(net: nn.Module) -> list[str]:
    """State-dict keys of the instance norms' scales and shifts, in network order."""
    return [f"{name}.{p}" for name, m in net.named_modules()
            if isinstance(m, nn.InstanceNorm2d) for p in ("weight", "bias")]


def style_count(net: nn.Module) -> int:
    """How many styles ``net`` holds (1 for an ordinary network)."""
    return next((int(m.weight.shape[0]) for m in net.modules()
                 if isinstance(m, ConditionalInstanceNorm2d)), 1)


def make_multistyle(net: TransformerNet, styles: int) -> TransformerNet:
    """``net`` with every instance norm made conditional on ``styles`` styles, each
    starting from ``net``'s own scale and shift (in place; returned for chaining)."""
    for parent in list(net.modules()):
        for key, child in list(parent.named_children()):
            if isinstance(child, nn.InstanceNorm2d) and \
                    not isinstance(child, ConditionalInstanceNorm2d):
                cin = ConditionalInstanceNorm2d(child.num_features, styles, child.eps)
                with torch.no_grad():
                    cin.weight.copy_(child.weight.detach().expand(styles, -1))
                    cin.bias.copy_(child.bias.detach().expand(styles, -1))
                setattr(parent, key, cin.to(child.weight.device))
    return net


def set_style(net: nn.Module, index: int) -> None:
    """Run style ``index`` of a multi-style network from now on."""
    for m in net.modules():
        if isinstance(m, ConditionalInstanceNorm2d):
            m.style = index


def single_style(net: TransformerNet, mix: torch.Tensor) -> TransformerNet:
    """An ordinary network whose norms are ``mix @ rows`` of ``net``'s (``mix``: one
    weight per style; one-hot picks a style, a convex mix blends them); every other
    weight is ``net``'s, copied exactly."""
    plain = TransformerNet(net.config)
    norms = set(norm_keys(plain))
    state = {}
    for key, value in net.state_dict().items():
        if key in norms and value.dim() == 2:
            state[key] = (mix.to(value) @ value) if int(mix.count_nonzero()) != 1 \
                else value[int(mix.argmax())].clone()
        else:
            state[key] = value.clone()
    plain.load_state_dict(state, strict=True)
    return plain
