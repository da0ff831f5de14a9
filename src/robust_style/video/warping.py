"""Temporal stability: warping error on clips whose motion is known exactly (numpy only).

Warping error (Lai et al., "Learning Blind Video Temporal Consistency", ECCV 2018, eq. 9):
the mean squared difference between output frame ``t+1`` and output frame ``t`` warped by
the true motion from ``t`` to ``t+1``, over the pixels visible in both frames
(non-occluded), averaged over frame pairs. Pixel values are in [0, 1]; 0 means the output
moves exactly as the content does, flicker raises it.

The clips are synthesised from still photos (:func:`synthetic_clip`): frame ``t`` is the
photo seen through a camera that pans, rotates and zooms by known affine maps, so the
flow between consecutive frames is exact and nothing is ever occluded except at the
border (which the mask leaves out). ``"pan"`` moves by whole pixels, so warping needs no
interpolation and the input clip's own warping error is 0; ``"affine"`` adds sub-pixel
motion, rotation and zoom (bilinear, so the input's own error is small but not 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["MOTIONS", "Clip", "synthetic_clip", "warp_frame", "warping_error"]

#: name -> per-frame (dx px, dy px, rotation degrees, zoom factor) of the camera.
MOTIONS: dict[str, tuple[float, float, float, float]] = {
    "pan": (2.0, 1.0, 0.0, 1.0),
    "affine": (1.5, -0.75, 0.4, 1.006),
}


@dataclass(frozen=True)
class Clip:
    """Frames (``HxWx3 uint8``) and, per consecutive pair, the backward map.

    ``maps[t]`` takes pixel ``(x, y)`` of frame ``t+1`` to the position in frame ``t``
    showing the same point of the scene: a 2x3 matrix (exact, synthesised clips) or a dense
    ``(sx, sy, valid)`` (estimated flow of a real clip, :mod:`robust_style.video.flow`).
    """

    name: str
    frames: tuple[np.ndarray, ...]
    maps: tuple[np.ndarray | tuple[np.ndarray, ...], ...]


def _camera(t: int, motion: tuple[float, float, float, float], cx: float, cy: float
            ) -> np.ndarray:
    """3x3 map from frame-``t`` pixel coordinates to photo coordinates."""
    dx, dy, rot, zoom = motion
    a = np.deg2rad(rot * t)
    s = 1.0 / zoom ** t  # zooming in: each frame pixel covers less of the photo
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * s
    m = np.eye(3)
    m[:2, :2] = r
    # rotate/zoom about the frame centre, then move the camera by (dx, dy) * t
    m[:2, 2] = np.array([cx, cy]) - r @ np.array([cx, cy]) + np.array([dx * t, dy * t])
    return m


def synthetic_clip(photo: np.ndarray, frames: int = 12, size: tuple[int, int] = (256, 160),
                   motion: str = "affine", name: str = "") -> Clip:
    """A clip of ``frames`` frames of ``size`` (w, h) filmed from ``photo`` under ``motion``.

    The camera starts at the photo's centre; the photo must be large enough that every
    frame stays inside it (it is upscaled when it is not).
    """
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; choose from {', '.join(MOTIONS)}")
    m = MOTIONS[motion]
    w, h = size
    need_w = w + 2 * abs(m[0]) * frames + w * 0.3 + 8
    need_h = h + 2 * abs(m[1]) * frames + h * 0.3 + 8
    img = Image.fromarray(photo)
    scale = max(need_w / img.width, need_h / img.height, 1.0)
    if scale > 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)),
                         Image.Resampling.LANCZOS)
    ox, oy = (img.width - w) / 2 - abs(m[0]) * frames / 2, (img.height - h) / 2
    cx, cy = (w - 1) / 2, (h - 1) / 2
    shift = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]])
    cams = [shift @ _camera(t, m, cx, cy) for t in range(frames)]
    out = []
    for cam in cams:
        # PIL's AFFINE takes the output->input map; pixel centres are at +0.5 in PIL.
        c = _pil_centres(cam)
        out.append(np.asarray(img.transform((w, h), Image.Transform.AFFINE,
                                            tuple(c[:2].ravel()), Image.Resampling.BILINEAR)))
    maps = tuple((np.linalg.inv(cams[t]) @ cams[t + 1])[:2] for t in range(frames - 1))
    return Clip(name or motion, tuple(out), maps)


def _pil_centres(m: np.ndarray) -> np.ndarray:
    to_pil = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    return to_pil @ m @ np.linalg.inv(to_pil)


def warp_frame(frame: np.ndarray, backward: np.ndarray | tuple[np.ndarray, ...]
               ) -> tuple[np.ndarray, np.ndarray]:
    """``frame`` moved by ``backward`` (new pixel -> old position), bilinear.

    ``backward`` is a 2x3 affine matrix, or a dense map ``(sx, sy, valid)`` (HxW arrays of
    source positions and a mask of pixels with a trustworthy source, e.g. not occluded).
    Returns the warped frame (float, [0, 1]) and the mask of pixels whose source lies
    inside ``frame`` (and is valid).
    """
    h, w = frame.shape[:2]
    valid: np.ndarray | bool
    if isinstance(backward, tuple):
        sx, sy, valid = backward
    else:
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        sx = backward[0, 0] * xs + backward[0, 1] * ys + backward[0, 2]
        sy = backward[1, 0] * xs + backward[1, 1] * ys + backward[1, 2]
        valid = True
    inside = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1) & valid
    x0 = np.clip(np.floor(sx), 0, w - 1).astype(int)
    y0 = np.clip(np.floor(sy), 0, h - 1).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx = np.clip(sx - x0, 0, 1)[..., None]
    fy = np.clip(sy - y0, 0, 1)[..., None]
    f = frame.astype(np.float64) / 255.0
    top = f[y0, x0] * (1 - fx) + f[y0, x1] * fx
    bottom = f[y1, x0] * (1 - fx) + f[y1, x1] * fx
    return top * (1 - fy) + bottom * fy, inside


def warping_error(frames: Sequence[np.ndarray],
                  maps: Sequence[np.ndarray | tuple[np.ndarray, ...]]) -> float:
    """Mean over pairs of the masked MSE between frame ``t+1`` and warped frame ``t``."""
    if len(frames) != len(maps) + 1 or len(frames) < 2:
        raise ValueError("need N >= 2 frames and N - 1 maps")
    errors = []
    for t, m in enumerate(maps):
        warped, inside = warp_frame(frames[t], m)
        nxt = frames[t + 1].astype(np.float64) / 255.0
        d = ((nxt - warped) ** 2).mean(axis=-1)
        errors.append(float(d[inside].mean()) if inside.any() else 0.0)
    return float(np.mean(errors))


def stylized_warping_error(stylize: Callable[[np.ndarray], np.ndarray], clip: Clip) -> float:
    """Warping error of ``stylize`` applied frame by frame to ``clip``."""
    return warping_error([stylize(f) for f in clip.frames], clip.maps)
