"""Seconds per training step for each loss network, fp32 and bf16, in one run.

A step is what ``robust-style train`` does per batch: the transformer forward, the loss
network on the output and on the content batch, backward and an Adam update. Weights
are random (speed does not depend on their values), so this runs anywhere.

Target (issue 3): the robust ResNet-50 step <= 0.5x the VGG-16 step at fp32.

    python benchmarks/bench_train.py                      # 256 px, batch 4, CPU
    python benchmarks/bench_train.py --device cuda --repeats 20

Prints a table (median of --repeats after --warmup) and saves a bar chart PNG.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from robust_style.perceptual import BACKBONES, LossWeights, PerceptualLoss, build_loss_network
from robust_style.transformer_net import TransformerNet


def step_time(backbone: str, precision: str, size: int, batch: int, warmup: int, repeats: int,
              device: torch.device) -> float:
    torch.manual_seed(0)
    spec = BACKBONES[backbone]
    loss_net = build_loss_network(backbone, None, device=device)
    style = torch.rand(1, 3, size, size, device=device)
    crit = PerceptualLoss(loss_net, style, LossWeights(1.0, 1.0, 1.0), spec.style_layers,
                          spec.content_layer)
    net = TransformerNet().to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size, device=device)
    ctx = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
           else nullcontext())
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with ctx:
            loss, _ = crit(net(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backbones", default="robust-resnet50,vgg16,vgg19")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--out", type=Path, default=Path("docs/img/bench_train.png"))
    args = ap.parse_args()
    device = torch.device(args.device)
    backbones = args.backbones.split(",")
    precisions = args.precisions.split(",")
    print(f"# training step, {args.size} px, batch {args.batch}, {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    results: dict[tuple[str, str], float] = {}
    for prec in precisions:
        for bb in backbones:
            results[(bb, prec)] = step_time(bb, prec, args.size, args.batch, args.warmup,
                                            args.repeats, device)
            print(f"{bb:16s} {prec:5s} {results[(bb, prec)]:8.3f} s/step", flush=True)
    for prec in precisions:
        if ("robust-resnet50", prec) in results and ("vgg16", prec) in results:
            ratio = results[("robust-resnet50", prec)] / results[("vgg16", prec)]
            verdict = "meets" if ratio <= 0.5 else "MISSES"
            print(f"robust-resnet50 / vgg16 at {prec}: {ratio:.2f}x "
                  f"({verdict} the <= 0.5x target)" if prec == "fp32" else
                  f"robust-resnet50 / vgg16 at {prec}: {ratio:.2f}x")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart")
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(precisions)
    for j, prec in enumerate(precisions):
        xs = [i + j * width for i in range(len(backbones))]
        ax.bar(xs, [results[(b, prec)] for b in backbones], width, label=prec)
    ax.set_xticks([i + width * (len(precisions) - 1) / 2 for i in range(len(backbones))])
    ax.set_xticklabels(backbones)
    ax.set_ylabel("seconds per step (median)")
    ax.set_title(f"Training step, {args.size} px, batch {args.batch}, {device}")
    ax.legend()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"chart: {args.out}")


if __name__ == "__main__":
    main()
