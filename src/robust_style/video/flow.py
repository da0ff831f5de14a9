"""Real clips for the warping error: optical flow estimated on the *input* frames.

A real video's motion is not known, so (as Lai et al. 2018 do with FlowNet2) the flow
between consecutive input frames is estimated and the stylised frames are warped with
it. Here: OpenCV's DIS optical flow (Kroeger et al., "Fast Optical Flow using Dense
Inverse Search", ECCV 2016; ``opencv-python-headless``, in the ``train`` extra), backward
(frame t+1 -> t) and forward, and pixels failing the forward-backward consistency check
(Sundaram, Brox, Keutzer, ECCV 2010; the occlusion test of Ruder et al. 2016) are left
out as occluded. Estimated flow is imperfect, so the input clip's own warping error is
not 0: report it beside the models' as the floor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from robust_style.errors import UserError
from robust_style.video.source import open_source
from robust_style.video.warping import Clip

__all__ = ["estimate_map", "real_clip"]


def estimate_map(prev: np.ndarray, nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense backward map ``(sx, sy, valid)`` from frame ``nxt`` to frame ``prev``."""
    import cv2  # the train extra; the CLI names it when it is missing
    g0 = cv2.cvtColor(prev, cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(nxt, cv2.COLOR_RGB2GRAY)
    # Any: OpenCV's stubs reject calc(..., None), which allocates the output flow
    dis: Any = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    back = dis.calc(g1, g0, None)  # for each pixel of t+1: where it is in t
    fwd = dis.calc(g0, g1, None)
    h, w = g0.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    sx, sy = xs + back[..., 0], ys + back[..., 1]
    fwd_at = cv2.remap(fwd, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # Consistent: going back then forward returns to the start (Sundaram et al. 2010).
    err = ((back + fwd_at) ** 2).sum(-1)
    mag = (back ** 2).sum(-1) + (fwd_at ** 2).sum(-1)
    valid = err <= 0.01 * mag + 0.5
    return sx.astype(np.float64), sy.astype(np.float64), valid


def real_clip(path: str | Path, frames: int = 10, max_side: int = 320) -> Clip:
    """The first ``frames`` frames of a video file (longer side ``max_side``) and its flow."""
    from robust_style.imageio import fit_max_side

    src = open_source(path)
    try:
        imgs = []
        for f in src:
            imgs.append(fit_max_side(f.image, max_side))
            if len(imgs) == frames:
                break
    finally:
        src.close()
    if len(imgs) < 2:
        raise UserError(f"{path}: fewer than 2 frames")
    maps = tuple(estimate_map(imgs[t], imgs[t + 1]) for t in range(len(imgs) - 1))
    return Clip(f"{Path(path).stem}-flow", tuple(imgs), maps)
