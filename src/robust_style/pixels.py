"""Pixel comparisons shared by the export check, the engine gate and the scripts (numpy only).

One PSNR, so that "how close are two pictures" means the same thing in ``export/verify.py``,
the engine-selection gate in ``server/engines`` and the GPU check scripts.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["psnr"]


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB of two arrays of one shape (``inf`` when equal).

    ``peak`` is the largest possible value: 255 for ``uint8`` images, 1 for [0, 1] floats.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak * peak / mse)
