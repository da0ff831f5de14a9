"""``robust-style evaluate --video``: temporal stability (warping error) and frames/s.

Each held-out photo becomes short clips filmed under known motion
(:func:`robust_style.video.warping.synthetic_clip`: a whole-pixel pan, and an affine pan
+ rotation + zoom), so the flow between frames is exact. Every model stylises every
frame on its own (as a server does); the warping error of its output (Lai et al. 2018;
:mod:`robust_style.video.warping`) says how much it flickers: 0 means the stylised video
moves exactly as the scene does. The input clip's own warping error (0 for the pan,
bilinear resampling only for the affine motion) is the floor.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from robust_style.errors import UserError
from robust_style.evaluate.core import load_photos
from robust_style.evaluate.stylizers import load_stylizer
from robust_style.video.warping import MOTIONS, synthetic_clip, warping_error

__all__ = ["VideoScore", "evaluate_video", "format_video_table", "mean_warping_error"]


@dataclass(frozen=True)
class VideoScore:
    """One model on one synthesised clip."""

    model: str
    clip: str
    frames: int
    width: int
    height: int
    warping_error: float
    input_warping_error: float
    fps: float


def evaluate_video(models: Sequence[str | Path], photos: str | Path, *, frames: int = 10,
                   size: tuple[int, int] = (256, 160), motions: Sequence[str] = tuple(MOTIONS),
                   max_photos: int | None = None, trust: bool = False,
                   real_clips: Sequence[str | Path] = (),
                   progress: bool = True) -> list[VideoScore]:
    """Warping error and frames/s of each model on clips made from each photo.

    ``real_clips``: video files, judged on their first ``frames`` frames (longer side 320)
    with estimated flow (:mod:`robust_style.video.flow`).
    """
    if frames < 2:
        raise UserError(f"--frames must be at least 2, not {frames}")
    unknown = sorted(set(motions) - set(MOTIONS))
    if unknown:
        raise UserError(f"unknown motion(s) {', '.join(unknown)}; choose from "
                        f"{', '.join(MOTIONS)}")
    files, images = load_photos(photos, 0, max_photos)
    if not files:
        raise UserError(f"no photos in {photos}")
    clips = [synthetic_clip(img, frames, size, m, f"{p.stem}-{m}")
             for p, img in zip(files, images, strict=True) for m in motions]
    if real_clips:
        from robust_style.video.flow import real_clip

        clips += [real_clip(c, frames) for c in real_clips]
    stylizers = [load_stylizer(m, trust=trust) for m in models]
    labels = _labels([(s.label, Path(s.source)) for s in stylizers])
    scores = []
    bar = tqdm(total=len(stylizers) * len(clips), desc="evaluate --video", unit="clip",
               disable=not progress, leave=False)
    try:
        for label, s in zip(labels, stylizers, strict=True):
            s(clips[0].frames[0])  # warm-up
            for clip in clips:
                t0 = time.perf_counter()
                out = [s(f) for f in clip.frames]
                seconds = time.perf_counter() - t0
                h, w = clip.frames[0].shape[:2]
                scores.append(VideoScore(label, clip.name, len(out), w, h,
                                         warping_error(out, clip.maps),
                                         warping_error(clip.frames, clip.maps),
                                         len(out) / max(seconds, 1e-9)))
                bar.update(1)
    finally:
        bar.close()
    return scores


def _labels(named: list[tuple[str, Path]]) -> list[str]:
    """Style names; where several models share one, ``name (file or run folder)``."""
    names = [n for n, _ in named]
    out = []
    for name, source in named:
        where = source.parent.name if source.name == "style_model.pt" else source.name
        label = name if names.count(name) == 1 else f"{name} ({where})"
        while label in out:
            label += "'"
        out.append(label)
    return out


def mean_warping_error(scores: Sequence[VideoScore], model: str) -> float:
    return float(np.mean([s.warping_error for s in scores if s.model == model]))


def format_video_table(scores: Sequence[VideoScore], *, per_clip: bool = True) -> str:
    """A fixed-width table: per clip, then the mean per model (warping error x 1e3)."""
    lines = []
    mw = max([24, *(len(s.model) for s in scores)])
    cw = max([20, *(len(s.clip) for s in scores)])
    if per_clip:
        lines.append(f"{'model':<{mw}} {'clip':<{cw}} {'warp err x1e3':>13} {'input':>7} "
                     f"{'frames/s':>9}")
        for s in scores:
            lines.append(f"{s.model:<{mw}} {s.clip:<{cw}} {s.warping_error * 1e3:>13.4f} "
                         f"{s.input_warping_error * 1e3:>7.4f} {s.fps:>9.2f}")
        lines.append("")
    lines.append(f"{'model (mean over clips)':<{mw}} {'warp err x1e3':>13} {'frames/s':>9}")
    for model in dict.fromkeys(s.model for s in scores):
        mine = [s for s in scores if s.model == model]
        lines.append(f"{model:<{mw}} {mean_warping_error(scores, model) * 1e3:>13.4f} "
                     f"{statistics.median(s.fps for s in mine):>9.2f}")
    return "\n".join(lines) + "\n"
