"""Seconds per training step: the reference loop vs ours, per loss network and precision.

A step is one batch of training: the transformer forward, the loss network on the
output and the content batch, backward and an Adam update.

* ``reference``: the loop of pytorch/examples' ``fast_neural_style``
  (:mod:`reference_loop`): eager fp32, torchvision VGG-16 to relu4_3, MSELoss on Gram
  matrices, Adam, two ``.item()`` per step.
* ``ours``: ``robust-style train``'s step (:class:`~robust_style.transformer_net.step.TrainStep`)
  with its defaults (``--precision auto``, channels_last, ``--compile auto``), for
  ``vgg16``, ``vgg16-caffe`` and ``robust-resnet50``, at fp32 and at the default
  precision.

Weights are random (speed does not depend on their values), so this runs anywhere. The
variants run interleaved (one step of each per round), so a change of machine load hits
them all alike; medians are reported with the CPU model and the load average.

Target (issue 16): our default step with the same loss network (vgg16) >= 2x the
reference's speed.

    python benchmarks/bench_train.py                      # 256 px, batch 4
    python benchmarks/bench_train.py --ablations          # + NCHW variants
    python benchmarks/bench_train.py --device cuda --repeats 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from machine import cpu_model
from reference_loop import ReferenceStep, ReferenceVGG16

from robust_style.perceptual import BACKBONES, LossWeights, PerceptualLoss, build_loss_network
from robust_style.transformer_net import TransformerNet
from robust_style.transformer_net.runtime import cpu_has_native_bf16, resolve_precision
from robust_style.transformer_net.step import (
    TrainStep,
    compile_step,
    to_channels_last,
    wants_compile,
)


def reference_step(size: int, device: torch.device) -> Callable[[torch.Tensor], object]:
    torch.manual_seed(0)
    vgg = ReferenceVGG16().to(device)
    step = ReferenceStep(vgg, torch.rand(1, 3, size, size, device=device), 1e5, 1e10,
                         net=TransformerNet().to(device))
    return step


def our_step(backbone: str, precision: str, size: int, device: torch.device,
             channels_last: bool = True, compile_choice: str = "auto"
             ) -> Callable[[torch.Tensor], object]:
    torch.manual_seed(0)
    spec = BACKBONES[backbone]
    loss_net = build_loss_network(backbone, None, device=device)
    crit = PerceptualLoss(loss_net, torch.rand(1, 3, size, size, device=device),
                          LossWeights(1.0, 1.0, 1.0), spec.style_layers, spec.content_layer)
    net = TransformerNet().to(device).train()
    if channels_last:
        to_channels_last(net, loss_net)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    step = TrainStep(net, crit, opt, torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
                     device, precision, channels_last=channels_last)
    if wants_compile(compile_choice, device):
        compile_step(step)
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backbones", default="vgg16,vgg16-caffe,robust-resnet50")
    ap.add_argument("--ablations", action="store_true",
                    help="also our vgg16 step in NCHW (no channels_last), both precisions")
    ap.add_argument("--out", type=Path, default=Path("docs/img/bench_train.png"))
    ap.add_argument("--chart-only", action="store_true",
                    help="redraw the chart from the --out .json of an earlier run")
    args = ap.parse_args()
    if args.chart_only:
        save_chart(json.loads(args.out.with_suffix(".json").read_text()), args.out)
        return
    device = torch.device(args.device)
    default = resolve_precision("auto", device)
    precisions = ["fp32"] if default == "fp32" else ["fp32", default]

    variants: dict[str, Callable[[torch.Tensor], object]] = {
        "reference (vgg16, fp32)": reference_step(args.size, device)}
    for bb in args.backbones.split(","):
        for prec in precisions:
            variants[f"ours {bb} {prec}"] = our_step(bb, prec, args.size, device)
    if args.ablations:
        for prec in precisions:
            variants[f"ours vgg16 {prec} NCHW"] = our_step("vgg16", prec, args.size, device,
                                                           channels_last=False)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    load_before = os.getloadavg()
    print(f"# training step, {args.size} px, batch {args.batch}, {device}, {cpu_model()} "
          f"(native bf16: {cpu_has_native_bf16()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; default precision {default}; "
          f"interleaved, median of {args.repeats} after {args.warmup} warm-up", flush=True)
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.warmup + args.repeats):
        for name, step in variants.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            step(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if r >= args.warmup:
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
        print(f"round {r + 1}/{args.warmup + args.repeats} done, load {os.getloadavg()[0]:.1f}",
              flush=True)
    ref_name = "reference (vgg16, fp32)"
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    # Per-round ratios: both steps of a round ran within seconds of each other, so a
    # change of machine load between rounds cancels out.
    ratio = {k: statistics.median(a / b for a, b in zip(times[ref_name], v, strict=True))
             for k, v in times.items()}
    print("\n| step | wall s/step (median) | speed vs reference (median of per-round "
          "ratios) | CPU s/step (median) | CPU-time speed vs reference |\n|---|---|---|---|---|")
    for k in med:
        print(f"| {k} | {med[k]:.3f} | {ratio[k]:.2f}x | {med_cpu[k]:.3f} | "
              f"{med_cpu[ref_name] / med_cpu[k]:.2f}x |")
    target = f"ours vgg16 {default}"
    verdict = "meets" if ratio[target] >= 2 else "MISSES"
    print(f"\nour default step (vgg16, {default}) vs reference: {ratio[target]:.2f}x wall, "
          f"{med_cpu[ref_name] / med_cpu[target]:.2f}x CPU time ({verdict} the >= 2x target); "
          f"at --precision fp32: {ratio['ours vgg16 fp32']:.2f}x wall, "
          f"{med_cpu[ref_name] / med_cpu['ours vgg16 fp32']:.2f}x CPU time")
    load_after = os.getloadavg()
    print(f"load average (1/5/15 min) before {load_before}, after {load_after}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({
        "size": args.size, "batch": args.batch, "device": str(device), "cpu": cpu_model(),
        "native_bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads(),
        "default_precision": default, "median_s": med, "all_s": times,
        "median_cpu_s": med_cpu, "all_cpu_s": cpu, "ratio_vs_reference": ratio,
        "load_before": load_before, "load_after": load_after}, indent=2))
    save_chart(json.loads(args.out.with_suffix(".json").read_text()), args.out)


def save_chart(result: dict, out: Path) -> None:
    """Bar chart of CPU seconds per step (what the table leads with), speed in the labels."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart")
        return
    med = result["median_cpu_s"]
    ref = med["reference (vgg16, fp32)"]
    names = list(med)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.6))
    colors = ["#888888" if n.startswith("reference") else
              ("#1f77b4" if "fp32" in n else "#ff7f0e") for n in names]
    ax.barh(names[::-1], [med[n] for n in names][::-1], color=colors[::-1])
    for i, n in enumerate(names[::-1]):
        ax.text(med[n], i, f" {med[n]:.2f} s ({ref / med[n]:.2f}x)", va="center", fontsize=8)
    ax.set_xlabel("CPU seconds per step (median; label: speed vs reference)")
    ax.set_title(f"Training step, {result['size']} px, batch {result['batch']}, {result['cpu']}, "
                 f"{result['threads']} thread(s), load {result['load_before'][0]:.1f}", fontsize=9)
    ax.set_xlim(0, max(med.values()) * 1.35)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"chart: {out}")


if __name__ == "__main__":
    main()
