#!/usr/bin/env python
"""Side by side: models stylising one clip filmed from a photo under known motion.

Writes ``PREFIX.png`` (rows: the input and each model; columns: frames, then each model's
error map |frame t+1 - warped frame t| for the last pair, x4) and ``PREFIX.gif`` (the
clip and the models side by side, looping). Models: .onnx files or run folders.

    python scripts/video_strip.py photo.jpg the-scream.onnx runs/ft-base runs/ft-temporal \\
        --labels bundled "fine-tuned" "fine-tuned + temporal" --out docs/img/video
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from robust_style.evaluate.stylizers import load_stylizer
from robust_style.video.warping import synthetic_clip, warp_frame, warping_error


def _label(img: np.ndarray, text: str) -> np.ndarray:
    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, 7 * len(text) + 6, 14), fill=(0, 0, 0))
    d.text((3, 1), text, fill=(255, 255, 255))
    return np.asarray(im)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo", type=Path)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--labels", nargs="+")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--motion", default="affine")
    ap.add_argument("--size", type=int, nargs=2, default=(256, 160))
    ap.add_argument("--out", type=Path, required=True, help="output prefix")
    args = ap.parse_args()
    labels = args.labels or [Path(m).stem for m in args.models]
    photo = np.asarray(Image.open(args.photo).convert("RGB"))
    clip = synthetic_clip(photo, args.frames, tuple(args.size), args.motion)
    rows = [("input", list(clip.frames))]
    for label, m in zip(labels, args.models, strict=True):
        s = load_stylizer(m)
        rows.append((label, [s(f) for f in clip.frames]))
    shown = [0, args.frames // 3, 2 * args.frames // 3, args.frames - 1]
    strip_rows = []
    for label, frames in rows:
        err = warping_error(frames, clip.maps)
        warped, inside = warp_frame(frames[-2], clip.maps[-1])
        diff = np.abs(frames[-1].astype(float) / 255 - warped).mean(-1) * inside
        emap = np.repeat(np.clip(diff * 4 * 255, 0, 255).astype(np.uint8)[..., None], 3, -1)
        cells = [_label(frames[i], f"{label} t={i}") for i in shown]
        cells.append(_label(emap, f"error x4, WE={err * 1e3:.2f}e-3"))
        strip_rows.append(np.concatenate(cells, axis=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(strip_rows, axis=0)).save(f"{args.out}.png", optimize=True)
    gif = [Image.fromarray(np.concatenate([_label(r[1][t], r[0]) for r in rows], axis=1))
           for t in range(args.frames)]
    gif = gif + gif[-2:0:-1]  # back and forth
    gif[0].save(f"{args.out}.gif", save_all=True, append_images=gif[1:], duration=90, loop=0)
    print(f"wrote {args.out}.png and {args.out}.gif")


if __name__ == "__main__":
    main()
