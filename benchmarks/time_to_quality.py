"""Time to quality: our training defaults vs the reference loop, same wall-clock budget.

Both train a style network for one artwork on the same photos (scikit-image's bundled
photos; other ones held out for judging) with the same loss network (the real Caffe
VGG-16 of ../shared), the same batches (the same sample stream), batch size, learning
rate and content/style weights, for the same number of minutes. Then ``robust-style
evaluate`` scores both on the held-out photos.

    python benchmarks/time_to_quality.py photos --work /tmp/ttq
    python benchmarks/time_to_quality.py ours --work /tmp/ttq --minutes 12
    python benchmarks/time_to_quality.py reference --work /tmp/ttq --minutes 12
    robust-style evaluate /tmp/ttq/ours /tmp/ttq/reference --artwork ... --photos /tmp/ttq/heldout

(run the two trainings one after the other: the machine's load decides a wall-clock
budget; the script logs the load average and CPU model beside each.)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model
from PIL import Image
from reference_loop import ReferenceStep, ReferenceVGG16, reference_train
from torch.utils.data import DataLoader

from robust_style.cli import main as cli_main
from robust_style.transformer_net.config import DEFAULT_LOSS_WEIGHTS
from robust_style.transformer_net.data import (
    ImageFolderDataset,
    StepSampler,
    find_images,
    load_image_tensor,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROBUST_STYLE_SHARED", REPO.parent / "shared"))
ARTWORK = SHARED / "images" / "styles" / "the-scream.jpg"
VGG16 = SHARED / "weights" / "vgg16-imagenet-caffe-features.pth"
TRAIN = ("chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "coins",
         "moon")
HELDOUT = ("astronaut", "coffee", "camera")
#: Shared settings: batch size, learning rate, seed, and our default Caffe VGG-16 content
#: and style weights (measured by ``tune``; docs/training.md), which ``ours`` gets by not
#: passing any; the reference loop has no TV term.
BATCH, LR, SEED = 4, 1e-3, 0
CONTENT_W, STYLE_W = (float(w) for w in DEFAULT_LOSS_WEIGHTS["vgg16-caffe"][:2])


def write_photos(work: Path) -> None:
    import skimage.data as data

    for folder, names in (("train", TRAIN), ("heldout", HELDOUT)):
        (work / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            arr = getattr(data, name)()
            if arr.ndim == 2:
                arr = np.stack([arr] * 3, axis=-1)
            Image.fromarray(np.ascontiguousarray(arr[..., :3])).save(work / folder / f"{name}.png")


def run_ours(work: Path, minutes: float, size: int, extra: list[str]) -> None:
    out = work / "ours"
    argv = ["train", "--style", str(ARTWORK), "--content", str(work / "train"), "--out", str(out),
            "--backbone", "vgg16-caffe", "--backbone-weights", str(VGG16),
            "--image-size", str(size), "--batch-size", str(BATCH), "--lr", str(LR),
            "--seed", str(SEED), "--max-steps", "1000000", "--max-minutes", str(minutes),
            "--sample-image", str(work / "heldout" / "astronaut.png"), *extra]
    code = cli_main(argv)
    if code:
        raise SystemExit(code)


def run_reference(work: Path, minutes: float, size: int) -> None:
    torch.manual_seed(SEED)
    vgg = ReferenceVGG16(VGG16, caffe=True)
    style = load_image_tensor(ARTWORK, size)
    step = ReferenceStep(vgg, style, CONTENT_W, STYLE_W, lr=LR)
    dataset = ImageFolderDataset(find_images(work / "train"), size)
    sampler = StepSampler(len(dataset), BATCH, seed=SEED, start_step=0, total_steps=10**6)
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler, drop_last=True)
    result = reference_train(step, loader, minutes * 60, work / "reference",
                             {"name": "the-scream-reference", "backbone": "vgg16-caffe",
                              "style_image": str(ARTWORK)})
    logging.info("reference: %s", result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("photos", "ours", "reference"))
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("extra", nargs="*", help="for `ours`: more `robust-style train` options")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    info = {"what": args.what, "cpu": cpu_model(), "threads": torch.get_num_threads(),
            "load_before": os.getloadavg(), "minutes": args.minutes, "size": args.size}
    if args.what == "photos":
        write_photos(args.work)
    elif args.what == "ours":
        run_ours(args.work, args.minutes, args.size, args.extra)
    else:
        run_reference(args.work, args.minutes, args.size)
    info["load_after"] = os.getloadavg()
    logging.info("%s", json.dumps(info))
    (args.work / f"{args.what}.info.json").write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
