"""A resumable, rank-aware stream of training samples.

Sample slot ``k`` (0, 1, 2, ...) is image ``perm(seed, epoch)[k mod n]`` with
``epoch = k // n``, cropped with a seed derived from ``(seed, k)``. Global step ``s``
covers slots ``[s·B·W, (s+1)·B·W)`` and rank ``r`` takes its ``B`` of them. The whole
stream is a function of ``(seed, step)``: a resumed run sees exactly the images and
crops the uninterrupted run would have seen, on any number of processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["StepSampler"]


class StepSampler(Sampler[tuple[int, int]]):
    def __init__(self, n: int, batch_size: int, *, seed: int, start_step: int, total_steps: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.n, self.batch_size = n, batch_size
        self.seed, self.start, self.total = seed, start_step, total_steps
        self.rank, self.world = rank, world_size
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g).tolist()}
        return self._perms[epoch]

    def slot(self, k: int) -> tuple[int, int]:
        epoch, pos = divmod(k, self.n)
        crop_seed = (self.seed * 2_654_435_761 + k * 40_503) % (2**63)
        return self._perm(epoch)[pos], crop_seed

    def epoch_of_step(self, step: int) -> float:
        return step * self.batch_size * self.world / self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        per_step = self.batch_size * self.world
        for step in range(self.start, self.total):
            base = step * per_step + self.rank * self.batch_size
            for k in range(base, base + self.batch_size):
                yield self.slot(k)

    def __len__(self) -> int:
        return max(0, self.total - self.start) * self.batch_size
