"""Training images: every JPEG/PNG/WebP under a folder, recursively.

Files whose header cannot be read are skipped at scan time with one warning each;
files that fail later (a truncated JPEG decodes its header fine) are skipped when
loaded, with one warning naming the file, and another image is used. A crash of a
week-long run because one photo in 80,000 is broken is not acceptable.

The order of the photos (:class:`StepSampler`), a resumable, rank-aware stream:

Sample slot ``k`` (0, 1, 2, ...) is image ``perm(seed, epoch)[k mod n]`` with
``epoch = k // n``, cropped with a seed derived from ``(seed, k)``. Global step ``s``
covers slots ``[s·B·W, (s+1)·B·W)`` and rank ``r`` takes its ``B`` of them. The whole
stream is a function of ``(seed, step)``: a resumed run sees exactly the images and
crops the uninterrupted run would have seen, on any number of processes. A run resumed
with another batch size or process count continues from the slot it had reached
(``start_slot``, the samples seen so far), so no photo is skipped or repeated early.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import functional as TF

from robust_style.errors import UserError
from robust_style.imageio import list_images, load_rgb, read_size, resize_shorter_side

__all__ = ['ImageFolderDataset', 'StepSampler', 'find_images', 'load_image_tensor', 'make_loader']

log = logging.getLogger(__name__)


def find_images(folder: str | Path) -> list[Path]:
    """All image files under the content ``folder`` (:func:`robust_style.imageio.list_images`;
    an empty folder is left to :class:`ImageFolderDataset` to refuse)."""
    return list_images(folder, what="content folder", required=False)


def load_image_tensor(path: str | Path, size: int | None = None) -> torch.Tensor:
    """An image as a ``(1, 3, H, W)`` float tensor in [0, 1]; shorter side resized to ``size``."""
    im = load_rgb(path)  # ImageError is a one-line UserError
    return TF.to_tensor(resize_shorter_side(im, size or 0)).unsqueeze(0)


class ImageFolderDataset(Dataset):
    """Random ``size``×``size`` crops of photos, shorter side first resized to ``size``.

    Johnson et al. 2016 trained on 256×256 COCO crops; resize-then-crop keeps most of
    each photo rather than a small patch of a large one.
    """

    def __init__(self, files: Sequence[Path], size: int, min_images: int = 1) -> None:
        self.size = int(size)
        usable: list[Path] = []
        for p in files:
            try:
                read_size(p)  # header only: format and minimum size
                usable.append(p)
            except Exception as exc:
                log.warning("skipping unreadable image %s: %s", p, exc)
        if len(usable) < min_images:
            raise UserError(f"found {len(usable)} usable image(s), need at least {min_images}; "
                            "point --content at a folder of JPEG/PNG/WebP photos")
        self.files = usable
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int, rng: random.Random) -> torch.Tensor:
        im = load_rgb(self.files[index])
        im = resize_shorter_side(im, self.size, Image.Resampling.BILINEAR)
        w, h = im.size
        top = rng.randint(0, h - self.size)
        left = rng.randint(0, w - self.size)
        im = im.crop((left, top, left + self.size, top + self.size))
        return TF.to_tensor(im)

    def __getitem__(self, item: int | tuple[int, int]) -> torch.Tensor:
        """``item`` is an index, or ``(index, crop_seed)`` for reproducible crops."""
        index, seed = item if isinstance(item, tuple) else (item, None)
        rng = random.Random(seed)
        for attempt in range(len(self.files)):
            i = (index + attempt) % len(self.files)
            if i in self._bad:
                continue
            try:
                return self._load(i, rng)
            except Exception as exc:
                self._bad.add(i)
                log.warning("skipping corrupt image %s: %s", self.files[i], exc)
        raise UserError("no image in the content folder could be decoded")


def make_loader(dataset: Dataset, sampler: Sampler, batch_size: int, workers: int,
                pin_memory: bool = False) -> DataLoader:
    """The training data loader: decoding and cropping run in ``workers`` processes, each
    keeping 4 batches ready, so the step does not wait for photos (the wait is measured
    in ``log.csv``'s ``data_wait_s`` and by ``benchmarks/bench_data.py``). Pinned memory
    (CUDA only) lets the copy to the GPU overlap the step."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, prefetch_factor=4 if workers else None,
                      persistent_workers=False, drop_last=True)


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
