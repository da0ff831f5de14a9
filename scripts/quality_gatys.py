"""Nakano's backbone comparison and Ilyas et al.'s single-layer experiment, measured.

    python scripts/quality_gatys.py --photos DIR --artworks A.jpg B.jpg --rf rf.csv --out DIR

1. Gatys et al. optimisation (``robust_style.analysis.optimize``, L-BFGS, the relative loss
   terms of ``robust-style optimize``) with each backbone's default layers, on the same
   photos and artworks, scored by the judges of ``robust-style evaluate``.
2. Single-layer style loss (Ilyas et al.'s comment on Nakano 2019) on VGG-16 and AlexNet
   layers; each layer's judge score is set against its R(f) from ``--rf`` (the CSV of
   ``robust-style analyze robustness``).

Writes ``gatys.csv``, ``single_layer.csv``, ``gatys_grid.png``, ``single_layer_grid.png``
and ``single_layer_vs_rf.png`` in ``--out``. Judge and backbone weights come from the
weights cache (``robust-style weights import ...``).
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
from pathlib import Path

import torch
from PIL import Image

from robust_style.analysis.images import load_image
from robust_style.analysis.optimize import GatysConfig, optimize_image
from robust_style.evaluate import Judges
from robust_style.imageio import list_images
from robust_style.perceptual import BACKBONES, build_loss_network
from robust_style.perceptual.weights import resolve_backbone
from robust_style.transformer_net.run_files import make_grid, tensor_to_image

BACKBONE_RUNS = (("vgg16-caffe", None), ("vgg19-caffe", None), ("alexnet-features", None),
                 ("resnet50", "random"))
SINGLE = (("vgg16-caffe", ("relu1_2", "relu2_2", "relu3_3", "relu4_3")),
          ("alexnet-features", ("relu1", "relu2", "relu3", "relu4")))


def _net(name: str, weights: str | None) -> tuple[str, torch.nn.Module]:
    if weights == "random":
        torch.manual_seed(0)
        return name, build_loss_network(name, None)
    arch, path = resolve_backbone(name, None)
    return arch, build_loss_network(arch, path)


def _write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--artworks", type=Path, nargs="+", required=True)
    ap.add_argument("--rf", type=Path, required=True, help="robustness.csv")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--max-photos", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    photos = [(p.stem, load_image(p, args.size)) for p in list_images(args.photos)[:args.max_photos]]
    arts = [(a.stem, load_image(a, args.size)) for a in args.artworks]
    judges = {name: Judges(art, judge_size=args.size) for name, art in arts}

    rows, tiles = [], {}
    for name, weights in BACKBONE_RUNS:
        arch, net = _net(name, weights)
        spec = BACKBONES[arch]
        label = f"{arch} (random)" if weights == "random" else arch
        for art_name, art in arts:
            for photo_name, photo in photos:
                cfg = GatysConfig(style_layers=spec.style_layers, content_layer=spec.content_layer,
                                  steps=args.steps)
                t0 = time.process_time()
                res = optimize_image(net, photo, art, cfg, progress=False)
                cpu = time.process_time() - t0
                s = judges[art_name].score(photo, res.image)
                rows.append({"backbone": label, "artwork": art_name, "photo": photo_name, **s,
                             "cpu_s": f"{cpu:.1f}"})
                tiles[(label, art_name, photo_name)] = res.image
                print(rows[-1], flush=True)
    _write_csv(rows, args.out / "gatys.csv")
    labels = list(dict.fromkeys(r["backbone"] for r in rows))
    grid_rows = []
    for art_name, art in arts:
        for photo_name, photo in photos:
            grid_rows.append(make_grid([tensor_to_image(photo), tensor_to_image(art)] + [
                tensor_to_image(tiles[(lb, art_name, photo_name)]) for lb in labels], height=128))
    _stack(grid_rows).save(args.out / "gatys_grid.png")

    rf = {}
    with args.rf.open() as fh:
        for r in csv.DictReader(fh):
            rf[(r["backbone"], r["layer"])] = float(r["r"])
    single, tiles = [], {}
    art_name, art = arts[0]
    for name, layers in SINGLE:
        arch, net = _net(name, None)
        for layer in layers:
            for photo_name, photo in photos:
                cfg = GatysConfig(style_layers=(layer,), content_layer=BACKBONES[arch].content_layer,
                                  steps=args.steps)
                res = optimize_image(net, photo, art, cfg, progress=False)
                s = judges[art_name].score(photo, res.image)
                single.append({"backbone": arch, "layer": layer, "photo": photo_name,
                               "r": rf.get((arch, layer), float("nan")), **s})
                tiles[(arch, layer, photo_name)] = res.image
                print(single[-1], flush=True)
    _write_csv(single, args.out / "single_layer.csv")
    order = list(dict.fromkeys((r["backbone"], r["layer"]) for r in single))
    grid_rows = [make_grid([tensor_to_image(photo)] + [tensor_to_image(tiles[(a, lay, pn)])
                                                       for a, lay in order], height=128)
                 for pn, photo in photos]
    _stack(grid_rows).save(args.out / "single_layer_grid.png")
    _plot_single(single, args.out / "single_layer_vs_rf.png")


def _stack(rows: list[Image.Image], gap: int = 4) -> Image.Image:
    w = max(r.width for r in rows)
    out = Image.new("RGB", (w, sum(r.height for r in rows) + gap * (len(rows) - 1)), "white")
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height + gap
    return out


def _plot_single(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=110)
    for arch, marker in (("vgg16-caffe", "o"), ("alexnet", "s")):
        pts: dict[str, list[float]] = {}
        for r in rows:
            if r["backbone"] == arch:
                pts.setdefault(r["layer"], [r["r"], 0.0, 0])
                pts[r["layer"]][1] += r["style_vgg19"]
                pts[r["layer"]][2] += 1
        xs = [v[0] for v in pts.values()]
        ys = [v[1] / v[2] for v in pts.values()]
        ax.plot(xs, ys, marker=marker, label=arch)
        for layer, x, y in zip(pts, xs, ys, strict=True):
            ax.annotate(layer, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.set_xlabel("R(f) of the style layer (lower = more robust)")
    ax.set_ylabel("style distance, VGG-19 judge (lower = nearer)")
    ax.set_title("Single-layer style loss: judge score vs. layer robustness", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
