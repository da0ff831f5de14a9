"""The pixel guarantee the server makes across batch composition and CPU kind.

A style's output for one image agrees to at most 1 LSB (uint8) whatever else shares its
batch, on every CPU this project serves on (Intel AMX, AMD AVX-512 BF16, AMD AVX2-only
with OpenVINO fp32). Bit identity is not promised: OpenVINO/oneDNN pick different kernels
and blocking for different batch shapes, so a rounding boundary can land on either side
(seen on an AVX2-only EPYC: 1 pixel of 9870 off by 1 between a batch of two and one alone).
"""

from __future__ import annotations

import numpy as np

MAX_LSB = 1                 # largest allowed per-channel difference
MAX_DIFFERING = 0.01        # fraction of channel values allowed to differ at all (fp32)
#: bf16 rounds coarser: the bundled style at 70x141 had 6.9% of values 1 LSB off (AVX-512 BF16)
MAX_DIFFERING_BF16 = 0.10


def assert_pixels_close(got: np.ndarray, want: np.ndarray, what: str = "",
                        max_differing: float = MAX_DIFFERING) -> None:
    """``got`` equals ``want`` up to the batch/CPU guarantee above (shapes must match)."""
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    worst, frac = int(diff.max(initial=0)), float((diff > 0).mean()) if diff.size else 0.0
    assert worst <= MAX_LSB and frac <= max_differing, (
        f"{what}: max abs diff {worst} (allowed {MAX_LSB}), {frac:.2%} of values differ "
        f"(allowed {max_differing:.0%})")
