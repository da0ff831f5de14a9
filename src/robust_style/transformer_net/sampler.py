"""A resumable, rank-aware stream of training samples.

Sample slot ``k`` (0, 1, 2, ...) is image ``perm(seed, epoch)[k mod n]`` with
``epoch = k // n``, cropped with a seed derived from ``(seed, k)``. Global step ``s``
covers slots ``[s·B·W, (s+1)·B·W)`` and rank ``r`` takes its ``B`` of them. The whole
stream is a function of ``(seed, step)``: a resumed run sees exactly the images and
crops the uninterrupted run would have seen, on any number of processes. A run resumed
with another batch size or process count continues from the slot it had reached
(``start_slot``, the samples seen so far), so no photo is skipped or repeated early.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["StepSampler"]


class StepSampler(Sampler[tuple[int, int]]):
    def __init__(self, n: int, batch_size: int, *, seed: int, start_step: int, total_steps: int,
                 rank: int = 0, world_size: int = 1, start_slot: int | None = None) -> None:
        self.n, self.batch_size = n, batch_size
        self.start_slot = start_step * batch_size * world_size if start_slot is None \
            else start_slot
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

    def slots_before(self, step: int) -> int:
        """Samples (all ranks) consumed before global step ``step``."""
        return self.start_slot + (step - self.start) * self.batch_size * self.world

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for step in range(self.start, self.total):
            base = self.slots_before(step) + self.rank * self.batch_size
            for k in range(base, base + self.batch_size):
                yield self.slot(k)

    def __len__(self) -> int:
        return max(0, self.total - self.start) * self.batch_size
