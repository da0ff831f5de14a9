"""A new artwork in minutes (issue 26): ``adapt`` from a multi-style base vs ``train``.

One of the six shared paintings is held out; a multi-style base (Dumoulin et al. 2017) is
trained on the other five. Then the held-out artwork is learnt twice on the same photos
(scikit-image's, other ones held out for judging), the same loss network (the real Caffe
VGG-16 of ../shared), batch size, image size and loss weights: by a full ``train`` from
scratch, and by ``adapt`` (the base's instance norms only). Every checkpoint of both is
judged by ``robust-style evaluate``'s judges on the held-out photos.

Budget accounting: both runs' ``log.csv`` give the training loop's wall-clock seconds
(setup, loading the loss network and the artwork's Gram matrices excluded, alike for
both); because the machine is shared, the seconds per step of each mode are also measured
interleaved in one sitting (``pace``) and the chart's minutes are steps x that median.

    python benchmarks/bench_adapt.py all --work /tmp/adapt   # photos, base, scratch, adapt,
                                                             # pace, judge, pictures
    python benchmarks/bench_adapt.py judge --work /tmp/adapt # any step again, alone

Writes ``WORK/adapt_bench.json``, ``WORK/adapt_curve.png`` (score against minutes),
``WORK/adapt_grid.jpg`` and ``WORK/blend_row.jpg``; docs/adapt.md has a run's figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import statistics
import time
from pathlib import Path

import torch
from machine import cpu_model
from PIL import Image
from time_to_quality import HELDOUT, SHARED, VGG16, write_photos

from robust_style.cli import main as cli_main
from robust_style.evaluate import EvalConfig, JudgeWeights, evaluate
from robust_style.imageio import load_rgb, save_image
from robust_style.transformer_net import load_style_model
from robust_style.transformer_net.run_files import make_grid

log = logging.getLogger("bench_adapt")
STYLES = SHARED / "images" / "styles"
ALL_STYLES = ("the-scream", "udnie", "the-great-wave", "woman-with-a-hat",
              "shipwreck-of-the-minotaur", "starry-night")
JUDGES = JudgeWeights(vgg19=SHARED / "weights" / "vgg19-imagenet-caffe-features.pth",
                      alexnet=SHARED / "weights" / "alexnet-torchvision-features.pth",
                      lpips=SHARED / "weights" / "lpips" / "lpips-v0.1-alex-lin.pth")
SCORES = ("style_vgg19", "style_alexnet", "content_lpips")


def _common(args: argparse.Namespace, work: Path, steps: int = 1_000_000) -> list[str]:
    return ["--content", str(work / "train"), "--backbone", "vgg16-caffe",
            "--backbone-weights", str(VGG16), "--image-size", str(args.size),
            "--batch-size", str(args.batch), "--seed", "0", "--max-steps", str(steps),
            "--sample-image", str(work / "heldout" / f"{HELDOUT[0]}.png"), "--workers", "1"]


def _run(argv: list[str]) -> None:
    log.info("robust-style %s", " ".join(argv))
    code = cli_main(argv)
    if code:
        raise SystemExit(code)


def base(args: argparse.Namespace, work: Path) -> None:
    styles = [s for s in ALL_STYLES if s != args.held_out]
    argv = ["train", *(a for s in styles for a in ("--style", str(STYLES / f"{s}.jpg"))),
            "--out", str(work / "base"), "--max-minutes", str(args.base_minutes),
            "--checkpoint-interval", "500", "--sample-interval", "500", *_common(args, work)]
    _run(argv)


def scratch(args: argparse.Namespace, work: Path) -> None:
    _run(["train", "--style", str(STYLES / f"{args.held_out}.jpg"), "--out", str(work / "scratch"),
          "--max-minutes", str(args.minutes), "--checkpoint-interval", str(args.scratch_every),
          "--keep-checkpoints", "1000", "--sample-interval", "0", *_common(args, work)])


def _adapt_dir(work: Path, lr: float) -> Path:
    return work / f"adapt-lr{lr:g}"


def adapt(args: argparse.Namespace, work: Path) -> None:
    _run(["adapt", str(work / "base"), "--style", str(STYLES / f"{args.held_out}.jpg"),
          "--out", str(_adapt_dir(work, args.adapt_lr)),
          "--max-minutes", str(args.adapt_minutes),
          "--lr", str(args.adapt_lr), "--checkpoint-interval", str(args.adapt_every),
          "--keep-checkpoints", "1000", "--sample-interval", "0", *_common(args, work)])


def _seconds_per_step(run: Path, batch: int) -> float:
    """Median seconds per step of a run's ``log.csv`` (its first row, warm-up, left out)."""
    with (run / "log.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))[1:]
    return statistics.median(batch / float(r["images_per_s"]) for r in rows)


def pace(args: argparse.Namespace, work: Path) -> dict[str, list[float]]:
    """Seconds per step of ``train`` and ``adapt``, interleaved, 3 rounds of 30 steps."""
    out: dict[str, list[float]] = {"scratch": [], "adapt": []}
    for r in range(3):
        for mode in ("scratch", "adapt"):
            run = work / "pace" / f"{mode}-{r}"
            head = (["train"] if mode == "scratch" else ["adapt", str(work / "base")])
            _run([*head, "--style", str(STYLES / f"{args.held_out}.jpg"), "--out", str(run),
                  "--checkpoint-interval", "1000", "--sample-interval", "0",
                  "--log-interval", "5", *_common(args, work, steps=30)])
            out[mode].append(_seconds_per_step(run, args.batch))
    (work / "pace.json").write_text(json.dumps(out, indent=2))
    return out


def _elapsed(run: Path) -> dict[int, float]:
    with (run / "log.csv").open(newline="") as fh:
        return {int(r["step"]): float(r["elapsed_s"]) for r in csv.DictReader(fh)}


def judge(args: argparse.Namespace, work: Path) -> dict:
    """Every checkpoint of both runs judged on the held-out photos."""
    artwork = STYLES / f"{args.held_out}.jpg"
    pace_s = {k: statistics.median(v) for k, v in
              json.loads((work / "pace.json").read_text()).items()}
    curves: dict[str, list[dict]] = {}
    runs = ["scratch", *sorted(p.name for p in work.glob("adapt*") if p.is_dir())]
    for mode in runs:
        run = work / mode
        elapsed = _elapsed(run)
        ckpts = sorted((run / "checkpoints").glob("step-*.pt"))
        result = evaluate(EvalConfig(models=tuple(ckpts), artwork=artwork,
                                     photos=work / "heldout", size=args.size * 2,
                                     judges=SCORES, progress=False), weights=JUDGES)
        points = []
        for ckpt, model in zip(ckpts, result.models, strict=True):
            step = int(ckpt.stem.split("-")[1])
            wall = elapsed.get(step) or elapsed[min(elapsed, key=lambda s: abs(s - step))]
            per_step = pace_s["scratch" if mode == "scratch" else "adapt"]
            points.append({"step": step, "minutes": step * per_step / 60,
                           "wall_minutes": wall / 60,
                           **{j: result.mean(model, j) for j in SCORES}})
        curves[mode] = points
    final = curves["scratch"][-1]
    budget = final["minutes"] / 5
    at_fifth: dict[str, dict | None] = {}
    verdict: dict[str, dict[str, float | None]] = {}
    for mode in runs[1:]:
        within = [p for p in curves[mode] if p["minutes"] <= budget * 1.0001]
        best = within[-1] if within else None
        at_fifth[mode] = best
        verdict[mode] = {j: (best[j] / final[j] - 1.0) if best else None for j in SCORES}
    report = {"cpu": cpu_model(), "threads": torch.get_num_threads(),
              "load": os.getloadavg(), "held_out": args.held_out, "size": args.size,
              "batch": args.batch, "seconds_per_step": pace_s, "curves": curves,
              "scratch_final": final, "adapt_at_one_fifth": at_fifth,
              "relative_to_scratch": verdict}
    (work / "adapt_bench.json").write_text(json.dumps(report, indent=2))
    _chart(report, work / "adapt_curve.png")
    return report


def _chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SCORES), figsize=(5 * len(SCORES), 3.6))
    budget = report["scratch_final"]["minutes"] / 5
    for ax, j in zip(axes, SCORES, strict=True):
        for mode, pts in report["curves"].items():
            label = ("train from scratch" if mode == "scratch" else
                     f"adapt, norms only (lr {mode.removeprefix('adapt-lr')})")
            ax.plot([p["minutes"] for p in pts], [p[j] for p in pts],
                    "o-" if mode == "scratch" else "s-", ms=3, label=label)
        final = report["scratch_final"][j]
        ax.axhspan(final * 0.95, final * 1.05, color="grey", alpha=0.2,
                   label="scratch's final ±5%")
        ax.axvline(budget, color="k", ls=":", lw=1, label="1/5 of scratch's time")
        ax.set_xlabel(f"minutes of training ({report['cpu']})", fontsize=7)
        ax.set_title(f"{j} (lower is nearer)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"A new artwork ({report['held_out']}, held out of the 5-style base)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _stylise(net: torch.nn.Module, photo: Path, size: int) -> Image.Image:
    from robust_style.transformer_net.data import load_image_tensor
    from robust_style.transformer_net.run_files import tensor_to_image

    with torch.no_grad():
        return tensor_to_image(net.eval()(load_image_tensor(photo, size)))


def pictures(args: argparse.Namespace, work: Path) -> None:
    """The grid (photo, artwork, scratch's final, adapt at 1/5 of its time, adapt's last)
    and a blend row from one base style to another (Dumoulin et al. 2017, Figure 6)."""
    report = json.loads((work / "adapt_bench.json").read_text())
    # the adapt run nearest scratch's style score at a fifth of its time
    mode, best = min(((m, p) for m, p in report["adapt_at_one_fifth"].items() if p),
                     key=lambda mp: mp[1]["style_vgg19"])
    picks = [("scratch", report["scratch_final"]["step"]), (mode, best["step"]),
             (mode, report["curves"][mode][-1]["step"])]
    rows = []
    for name in HELDOUT:
        photo = work / "heldout" / f"{name}.png"
        row = [load_rgb(photo), Image.open(STYLES / f"{args.held_out}.jpg")]
        for run, step in picks:
            net = load_style_model(work / run / "checkpoints" / f"step-{step:08d}.pt").net
            row.append(_stylise(net, photo, 256))
        rows.append(make_grid(row, height=200))
    _stack(rows, work / "adapt_grid.jpg")
    a, b = args.blend
    photo = work / "heldout" / f"{HELDOUT[0]}.png"
    row = [load_rgb(photo)]
    for w in (1.0, 0.75, 0.5, 0.25, 0.0):
        mix = {a: w, b: 1.0 - w} if 0 < w < 1 else {a if w else b: 1.0}
        row.append(_stylise(load_style_model(work / "base", mix=mix).net, photo, 256))
    save_image(make_grid(row, height=200), work / "blend_row.jpg")


def _stack(rows: list[Image.Image], path: Path) -> None:
    width = max(r.width for r in rows)
    out = Image.new("RGB", (width, sum(r.height + 4 for r in rows)), (255, 255, 255))
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height + 4
    save_image(out, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("all", "photos", "base", "scratch", "adapt", "pace",
                                     "judge", "pictures"))
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--held-out", default="starry-night", choices=ALL_STYLES)
    ap.add_argument("--size", type=int, default=128, help="training crop (default 128)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--base-minutes", type=float, default=20.0)
    ap.add_argument("--minutes", type=float, default=12.0, help="the scratch run's budget")
    ap.add_argument("--adapt-minutes", type=float, default=4.0)
    ap.add_argument("--adapt-lr", type=float, default=1e-2,
                    help="adapt's learning rate (default 1e-2, adapt's own; the run goes to "
                    "WORK/adapt-lrLR, so several can be compared)")
    ap.add_argument("--scratch-every", type=int, default=100, help="checkpoint interval")
    ap.add_argument("--adapt-every", type=int, default=20, help="checkpoint interval")
    ap.add_argument("--blend", nargs=2, default=("the-scream", "the-great-wave"),
                    metavar=("A", "B"), help="two base styles for the blend row")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work = args.work
    steps = {"photos": lambda: write_photos(work), "base": lambda: base(args, work),
             "scratch": lambda: scratch(args, work), "adapt": lambda: adapt(args, work),
             "pace": lambda: pace(args, work), "judge": lambda: judge(args, work),
             "pictures": lambda: pictures(args, work)}
    for name in (steps if args.what == "all" else (args.what,)):
        if name == "all":
            continue
        t0 = time.perf_counter()
        steps[name]()
        log.info("%s done in %.0f s (load %s)", name, time.perf_counter() - t0, os.getloadavg())


if __name__ == "__main__":
    main()
