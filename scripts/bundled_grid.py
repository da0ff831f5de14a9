"""Make docs/img/bundled_grid.png: content | style | result rows by the bundled model.

    python scripts/bundled_grid.py [--style ../shared/images/styles/the-scream.jpg] PHOTO...

Runs the shipped ONNX file with ONNX Runtime (CPU), as the server does.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from robust_style.contract import INPUT_NAME, OUTPUT_NAME


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="+", type=Path)
    ap.add_argument("--model", type=Path,
                    default=Path(str(resources.files("robust_style") / "models" /
                                     "the-scream.onnx")))
    ap.add_argument("--style", type=Path, default=Path("../shared/images/styles/the-scream.jpg"))
    ap.add_argument("--height", type=int, default=320)
    ap.add_argument("--out", type=Path, default=Path("docs/img/bundled_grid.png"))
    args = ap.parse_args()
    sess = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    h = args.height

    def fit(im: Image.Image) -> Image.Image:
        return im.resize((round(im.width * h / im.height), h), Image.LANCZOS)

    style = fit(Image.open(args.style).convert("RGB"))
    rows = []
    for photo in args.photos:
        x = fit(Image.open(photo).convert("RGB"))
        y = sess.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(x)[None]})[0][0]
        rows.append([x, style, Image.fromarray(y)])
    gap = 6
    width = max(sum(im.width for im in r) + 2 * gap for r in rows)
    grid = Image.new("RGB", (width, len(rows) * (h + gap) - gap), "white")
    for i, row in enumerate(rows):
        x0 = 0
        for im in row:
            grid.paste(im, (x0, i * (h + gap)))
            x0 += im.width + gap
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
