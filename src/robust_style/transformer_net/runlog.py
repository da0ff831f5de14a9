"""The run's loss log: ``log.csv`` rows, and loss sums kept on the device between rows.

Reading a loss (``.item()``, ``float(t)``) waits for the device to finish the step (a
host sync); on a GPU that stalls the pipeline. :class:`LossWindow` adds each step's
terms into a device tensor and reads it once per ``--log-interval``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from robust_style.fileio import atomic_write

__all__ = ["CsvLog", "LossWindow", "log_fields"]

_HEAD = ("step", "epoch")
_TAIL = ("total", "images_per_s", "data_wait_s", "elapsed_s")


def log_fields(terms: Sequence[str]) -> tuple[str, ...]:
    """``log.csv`` columns: step, epoch, one per loss term, total, images/s, the seconds
    the loop waited for batches since the previous row (``data_wait_s``: 0 when loading
    keeps ahead of training), elapsed."""
    return (*_HEAD, *terms, *_TAIL)


class CsvLog:
    """Appends rows to ``log.csv``; on resume drops rows past the resumed step."""

    def __init__(self, path: Path, fields: Sequence[str], resume_step: int | None) -> None:
        self.path = path
        self.fields = tuple(fields)
        rows: list[dict[str, str]] = []
        if resume_step is not None and path.is_file():
            with path.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
        with atomic_write(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, self.fields, extrasaction="ignore").writerow(row)
            fh.flush()


class LossWindow:
    """Sums of the loss terms (and of non-finite losses) since the last log row.

    ``add`` takes the step's detached ``(terms..., nonfinite)`` vector and never syncs;
    ``read`` syncs once, averaging over steps and, under DDP, over ranks (every rank
    must call it at the same step).
    """

    def __init__(self, terms: Sequence[str], device: torch.device) -> None:
        self.terms = tuple(terms)
        self.device = device
        self._sum = torch.zeros(len(self.terms) + 1, dtype=torch.float64, device=device)
        self.steps = 0

    def add(self, values: torch.Tensor) -> None:
        self._sum += values.to(torch.float64)
        self.steps += 1

    def any_nonfinite(self, distributed: bool = False) -> bool:
        """Whether a step since the last row had a non-finite loss (a host sync)."""
        flag = self._sum[-1:].clone()
        if distributed:
            dist.all_reduce(flag)
        return bool(flag.item() > 0)

    def read(self, distributed: bool = False) -> tuple[dict[str, float], bool]:
        """``({term: mean}, any_nonfinite)``; resets the window."""
        total = self._sum.clone()
        if distributed:
            dist.all_reduce(total)
        world = dist.get_world_size() if distributed else 1
        values = total.tolist()  # the one host sync per log interval
        n = max(self.steps, 1) * world
        means = {k: v / n for k, v in zip(self.terms, values[:-1], strict=True)}
        self._sum.zero_()
        self.steps = 0
        return means, values[-1] > 0
