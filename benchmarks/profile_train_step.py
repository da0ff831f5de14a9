"""Where a training step's CPU time goes: ``torch.profiler`` over one step, by self CPU time.

Profiles one of ``bench_train.py``'s steps (our step for a backbone and precision, or
the reference loop) after two warm-up steps and prints:

* the operators with the most self CPU time;
* the memory copies and fills (``aten::copy_``, ``aten::fill_``), attributed to the
  operator that made them (e.g. a convolution converting its input's layout, or a
  float32 <-> bfloat16 cast), which is what a layout or precision fix can remove.

Random weights (time does not depend on them); the thread count is torch's default
(set ``OMP_NUM_THREADS`` to compare). The profiler adds overhead: read shares, not times.

    python benchmarks/profile_train_step.py                     # ours, vgg16, default precision
    python benchmarks/profile_train_step.py --precision fp32
    python benchmarks/profile_train_step.py --reference
"""

from __future__ import annotations

import argparse
import collections
import os

import torch
from bench_train import our_step, reference_step
from machine import cpu_model
from torch.profiler import ProfilerActivity, profile

from robust_style.transformer_net.runtime import resolve_precision

#: Wrappers a copy is made through; the copy is attributed to the operator above them.
_WRAPPERS = {"aten::to", "aten::_to_copy", "aten::copy_", "aten::contiguous", "aten::clone",
             "aten::zero_", "aten::zeros_like", "aten::new_zeros", "aten::zeros",
             "aten::empty_like", "aten::reshape"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="vgg16")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--reference", action="store_true", help="profile the reference loop")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rows", type=int, default=15)
    args = ap.parse_args()
    device = torch.device("cpu")
    precision = resolve_precision(args.precision, device)
    if args.reference:
        step, what = reference_step(args.size, device), "reference (vgg16, fp32)"
    else:
        step = our_step(args.backbone, precision, args.size, device,
                        channels_last=not args.no_channels_last)
        what = f"ours {args.backbone} {precision}" + (" NCHW" if args.no_channels_last else "")
    x = torch.rand(args.batch, 3, args.size, args.size)
    step(x)
    step(x)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(x)
    events = prof.events()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"# {what}, {args.size} px, batch {args.batch}, {cpu_model()}, "
          f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}; "
          f"self CPU time {total / 1e6:.2f} s under the profiler\n")
    by_op: dict[str, float] = collections.defaultdict(float)
    copies: dict[str, float] = collections.defaultdict(float)
    for e in events:
        by_op[e.name] += e.self_cpu_time_total
        if e.name in ("aten::copy_", "aten::fill_"):
            parent = e.cpu_parent
            while parent is not None and parent.name in _WRAPPERS:
                parent = parent.cpu_parent
            copies[f"{e.name} in {parent.name if parent else '(Python)'}"] += e.self_cpu_time_total
    print("| operator | self CPU s | share |\n|---|---|---|")
    for name, t in sorted(by_op.items(), key=lambda kv: -kv[1])[:args.rows]:
        print(f"| {name} | {t / 1e6:.3f} | {100 * t / total:.1f}% |")
    copy_total = sum(copies.values())
    print(f"\ncopies and fills: {copy_total / 1e6:.3f} s, {100 * copy_total / total:.1f}% of the step\n")
    print("| copy/fill made by | self CPU s | share of the step |\n|---|---|---|")
    for name, t in sorted(copies.items(), key=lambda kv: -kv[1])[:args.rows]:
        print(f"| {name} | {t / 1e6:.3f} | {100 * t / total:.1f}% |")


if __name__ == "__main__":
    main()
