"""Architecture presets of the style network: Johnson et al.'s, and cheaper ones.

:class:`TransformerNetConfig` is the whole architecture (widths, residual blocks,
depthwise-separable residual blocks, end-convolution kernels, upsampling);
:data:`ARCH_PRESETS` names the ones this project measured (``docs/realtime.md``,
``benchmarks/bench_presets.py``). The config travels in every style model ``.pt``
(``net_config``) and in every exported file (``robust_style.net_config``, with the
preset's name in ``robust_style.arch``); a file without one (made before presets
existed) is Johnson's network, which is what the defaults give.

Why these presets and not a FLOP count: at narrow widths convolutions use SIMD poorly
and instance norm and element-wise ops dominate, so a quarter width alone is ~9x
faster on a 2-core CPU, not 16x (issue 23). Johnson et al. halve every width "without
sacrificing model quality" (jcjohnson/fast-neural-style README); Magenta's mobile
style transformer uses a width multiplier of 0.25 (arbitrary_image_stylization_train_
mobile.py); depthwise-separable convolutions follow MobileNets (Howard et al. 2017).

This module imports no torch: the CLI lists the names without loading it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from robust_style.errors import UserError

__all__ = ["ARCH_PRESETS", "DEFAULT_ARCH", "UPSAMPLING", "TransformerNetConfig", "arch_name",
           "arch_preset"]

#: Upsampling before each decoder convolution (Odena et al. 2016: resize, then convolve).
UPSAMPLING = ("nearest", "bilinear")


@dataclass(frozen=True)
class TransformerNetConfig:
    """Architecture of the network; the defaults are Johnson et al. 2016 (supp. Table 1).

    ``separable``: each residual convolution is depthwise ``res_kernel``² + pointwise
    1x1 (Howard et al. 2017) instead of a dense 3x3. ``end_kernel``: the first and last
    convolutions' kernel (9 in Johnson's network). ``upsample``: one of
    :data:`UPSAMPLING`.
    """

    channels: tuple[int, int, int] = (32, 64, 128)
    num_residual: int = 5
    separable: bool = False
    res_kernel: int = 3
    end_kernel: int = 9
    upsample: str = "nearest"

    def __post_init__(self) -> None:
        if len(self.channels) != 3 or any(int(c) < 1 for c in self.channels):
            raise UserError(f"net channels must be three positive widths, got {self.channels}")
        if self.num_residual < 0:
            raise UserError(f"residual blocks must be >= 0, got {self.num_residual}")
        # Reflection padding must be narrower than the side it pads: at the smallest
        # input (contract.MIN_SIDE = 8 px) the residual blocks see 2x2, the ends 8x8.
        for what, k, most in (("res_kernel", self.res_kernel, 3),
                              ("end_kernel", self.end_kernel, 9)):
            if k < 1 or k % 2 == 0 or k > most:
                raise UserError(f"{what} must be an odd kernel size from 1 to {most}, got {k}")
        if self.upsample not in UPSAMPLING:
            raise UserError(f"upsample must be one of {', '.join(UPSAMPLING)}, "
                            f"got {self.upsample!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransformerNetConfig:
        """From a stored dict; keys it lacks (older files) take Johnson's values."""
        d = cls()
        return cls(channels=tuple(int(c) for c in data.get("channels", d.channels)),  # type: ignore[arg-type]
                   num_residual=int(data.get("num_residual", d.num_residual)),
                   separable=bool(data.get("separable", d.separable)),
                   res_kernel=int(data.get("res_kernel", d.res_kernel)),
                   end_kernel=int(data.get("end_kernel", d.end_kernel)),
                   upsample=str(data.get("upsample", d.upsample)))

    def replace(self, **changes: Any) -> TransformerNetConfig:
        return replace(self, **changes)


DEFAULT_ARCH = "johnson"

#: Named architectures, fastest last. Times: bare engine (OpenVINO fp32 / bf16, ms),
#: 640x360, 2 threads, on the 2-vCPU AMD EPYC with AVX-512 BF16 (docs/realtime.md).
ARCH_PRESETS: dict[str, TransformerNetConfig] = {
    # Johnson et al. 2016: 1.68 M parameters; 478 / 226 ms.
    "johnson": TransformerNetConfig(),
    # Every width halved (jcjohnson/fast-neural-style's "half" models); 178 / 77 ms.
    "half": TransformerNetConfig(channels=(16, 32, 64)),
    # Half widths, depthwise-separable 3x3 residual convolutions; 107 / 62 ms.
    "half-sep": TransformerNetConfig(channels=(16, 32, 64), separable=True),
    # Quarter widths (Magenta mobile's 0.25 multiplier), 5x5 end convolutions; 43 / 31 ms.
    "quarter": TransformerNetConfig(channels=(8, 16, 32), end_kernel=5),
    # Quarter widths, 3 residual blocks, 3x3 end convolutions; 35 / 24 ms.
    "quarter-r3": TransformerNetConfig(channels=(8, 16, 32), num_residual=3, end_kernel=3),
}


def arch_preset(name: str) -> TransformerNetConfig:
    """The preset called ``name``, or a one-line error listing the names."""
    try:
        return ARCH_PRESETS[name]
    except KeyError:
        raise UserError(f"unknown --arch {name!r}; choose one of: "
                        f"{', '.join(ARCH_PRESETS)}") from None


def arch_name(config: TransformerNetConfig) -> str:
    """The preset ``config`` is, or ``custom``."""
    for name, preset in ARCH_PRESETS.items():
        if preset == config:
            return name
    return "custom"
