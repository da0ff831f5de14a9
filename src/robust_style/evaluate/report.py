"""Evaluation results out: CSV, Markdown, a terminal table, and a picture grid PNG."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from robust_style.evaluate.core import JUDGES, EvalResult
from robust_style.fileio import atomic_write_bytes, atomic_write_text

__all__ = ["CSV_COLUMNS", "format_markdown", "format_table", "save_grid", "write_csv",
           "write_outputs"]

CSV_COLUMNS = ("model", "photo", "width", "height", *JUDGES, "ms")
_HEADERS = {"style_vgg19": "style VGG-19", "style_alexnet": "style AlexNet",
            "content_lpips": "content LPIPS", "ms": "ms/image"}


def _fmt(value: float, digits: int = 4) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def write_csv(result: EvalResult, path: str | Path) -> Path:
    """One row per model and photo (header :data:`CSV_COLUMNS`), written atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in result.rows:
        w.writerow([r.model, r.photo, r.width, r.height,
                    *("" if math.isnan(r.score(j)) else f"{r.score(j):.6g}" for j in JUDGES),
                    f"{r.ms:.2f}"])
    return atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def _summary_rows(result: EvalResult) -> list[list[str]]:
    return [[m, *(_fmt(result.mean(m, j)) for j in JUDGES), f"{result.median_ms(m):.1f}"]
            for m in result.models]


def _detail_rows(result: EvalResult) -> list[list[str]]:
    return [[r.model, r.photo, *(_fmt(r.score(j)) for j in JUDGES), f"{r.ms:.1f}"]
            for r in result.rows]


def _fixed(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip()
              for b in body]
    return "\n".join(lines) + "\n"


def _md(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(b) + " |" for b in body]
    return "\n".join(lines) + "\n"


def _headers(first: Sequence[str]) -> list[str]:
    return [*first, *(_HEADERS[j] for j in JUDGES), _HEADERS["ms"]]


def format_table(result: EvalResult, *, per_photo: bool = True) -> str:
    """Fixed-width text: the per-photo scores, then the mean per model."""
    text = ""
    if per_photo:
        text += _fixed(_headers(["model", "photo"]), _detail_rows(result)) + "\n"
    text += _fixed(_headers(["model (mean over photos)"]), _summary_rows(result))
    return text


def format_markdown(result: EvalResult) -> str:
    """Markdown: the settings, the mean per model, then the per-photo scores."""
    cfg = result.config
    head = (f"Artwork `{Path(cfg.artwork).name}`; {len(result.photos)} photos from "
            f"`{cfg.photos}` at {cfg.size or 'original'} px (shorter side); style judges "
            f"at {cfg.judge_size} px. Lower is nearer: style = relative Gram distance to the "
            "artwork (VGG-19 relu1_1..relu5_1, AlexNet relu1..relu5), content = LPIPS-alex "
            "v0.1 to the photo; ms/image = median wall time of the model.\n\n")
    return (head + _md(_headers(["model"]), _summary_rows(result)) + "\n"
            + _md(_headers(["model", "photo"]), _detail_rows(result)))


def _thumb(img: np.ndarray, height: int) -> Image.Image:
    im = Image.fromarray(img)
    return im.resize((max(1, round(im.width * height / im.height)), height),
                     Image.Resampling.LANCZOS)


def save_grid(result: EvalResult, path: str | Path, *, height: int = 160) -> Path:
    """A PNG grid: one row per photo (the photo, then each model's result), a header row
    with the artwork and the model names, and each result's scores under it."""
    font = ImageFont.load_default()
    gap, label_h = 4, 28
    cols = ["photo", *result.models]
    rows = [[_thumb(p, height), *(_thumb(result.results[(m, name)], height)
                                  for m in result.models)]
            for p, name in zip(result.photo_images, result.photos, strict=True)]
    widths = [max(r[c].width for r in rows) for c in range(len(cols))]
    art = _thumb(result.artwork_image, height)
    widths[0] = max(widths[0], art.width)
    total_w = sum(widths) + gap * (len(cols) + 1)
    total_h = (height + label_h) * (len(rows) + 1) + gap * (len(rows) + 2)
    canvas = Image.new("RGB", (total_w, total_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    xs = [gap + sum(widths[:c]) + gap * c for c in range(len(cols))]
    y = gap
    canvas.paste(art, (xs[0], y))
    draw.text((xs[0], y + height + 2), f"artwork: {Path(result.config.artwork).name}"[:40],
              fill=(0, 0, 0), font=font)
    for c, m in enumerate(result.models, start=1):
        draw.text((xs[c], y + height // 2), m[:40], fill=(0, 0, 0), font=font)
    scores = {(r.model, r.photo): r for r in result.rows}
    for name, row in zip(result.photos, rows, strict=True):
        y += height + label_h + gap
        for c, im in enumerate(row):
            canvas.paste(im, (xs[c], y))
            if c == 0:
                text = name[:40]
            else:
                s = scores[(cols[c], name)]
                text = (f"VGG {_fmt(s.style_vgg19, 3)} Alex {_fmt(s.style_alexnet, 3)}\n"
                        f"LPIPS {_fmt(s.content_lpips, 3)}")
            draw.text((xs[c], y + height + 2), text, fill=(0, 0, 0), font=font)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def write_outputs(result: EvalResult, out_dir: str | Path) -> dict[str, Path]:
    """``scores.csv``, ``scores.md`` and ``grid.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {"csv": write_csv(result, out / "scores.csv"),
            "markdown": atomic_write_text(out / "scores.md", format_markdown(result)),
            "grid": save_grid(result, out / "grid.png")}
