"""Exact tiled inference: whole-image instance-norm statistics, tiles with halos, no seams.

The network runs layer group by layer group (:mod:`.split`). For each group, every tile
of the image (plus a halo as wide as the group's receptive radius) runs through the
group's segment; the halo is cropped, so each kept pixel is computed from exactly the
pixels the whole image would give it. The group's output (the raw input of the next
instance norm) goes into a full-size buffer, and its per-channel sum and sum of squares
are accumulated in float64 over the whole image at full resolution. Only when every tile
is done are the norm's mean and variance known; the next group then applies them
(``x * mul + add``) before its convolution. So every norm sees the statistics of the
whole image, as the untiled network does, and nothing is computed twice but the halos.

Borders: a tile touching the image border has no halo there and the segment's own padding
op (reflection) pads it exactly as it pads the whole image; at a tile's inner edge the
padding's made-up pixels fall in the halo and are cropped. Tile edges are multiples of
the network's largest downscale (``align``), so strided convolutions and nearest
upsampling see the same pixel grid as in the whole image.

Where the memory budget allows (the planner's choice, :mod:`robust_style.server.memory`),
a low-resolution stretch of the network (:attr:`SplitModel.groups`: Johnson et al.'s
residual blocks at 1/4 resolution) runs as one graph on the whole image, with its inner
instance norms as the network has them: the same result (a whole-image norm is exact),
without the per-segment passes over the part of the network that does most of the
arithmetic. Only the full-resolution ends, which hold most of the memory, go tile by tile.

Buffers hold the tensors kept between groups at their own resolution, in float16 by
default (the statistics are taken from the float32 values; the buffers' rounding costs
~60 dB PSNR on the bundled style, docs/serving.md), in RAM up to ``ram_bytes`` and beyond
that in memory-mapped files in a temporary folder (deleted when the run ends).

Cheaper alternative, measured and not used: Thumbnail Instance Normalization (Chen et
al., AAAI 2022) takes the statistics from a downscaled copy; on the bundled style at
1536x1024 it gives 28.8/22.9/20.1 dB at 1/2, 1/4, 1/8 scale (issue 22), well below the
40 dB this tiler is held to.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import mmap
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from robust_style.contract import INPUT_NAME, OUTPUT_NAME
from robust_style.server.engines.base import PartRunner
from robust_style.server.tiling.split import Segment, SplitModel

__all__ = ["TileConfig", "TiledRunner", "tiles"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileConfig:
    """Tile core side (working-resolution pixels) and where the buffers live.

    ``ram_bytes``: buffers beyond this many bytes go to memory-mapped files in
    ``spill_dir`` (the system's temporary folder when empty); 0 = all in RAM.
    """

    tile: int = 1024
    ram_bytes: int = 0
    spill_dir: str = ""


def _ceil_to(v: int, step: int) -> int:
    return -(-v // step) * step


def tiles(h: int, w: int, tile: int, align: int = 1) -> Iterator[tuple[int, int, int, int]]:
    """Core windows ``(y0, y1, x0, x1)`` covering an ``h x w`` working image: a grid of
    near-equal tiles no larger than ``tile``, sides multiples of ``align``. Equal tiles,
    not ``tile``-sized ones and a remainder: a sliver at the right or bottom edge would
    pay a run's fixed cost for a few pixels (measured on 4 MP, OpenVINO: 6% faster).
    Full-width strips were measured too and were slower: a row band of an NCHW buffer
    is not contiguous, so it saves no copy, and its halos cost more."""
    ny, nx = -(-h // tile), -(-w // tile)
    th, tw = _ceil_to(-(-h // ny), align), _ceil_to(-(-w // nx), align)
    for y0 in range(0, h, th):
        for x0 in range(0, w, tw):
            yield y0, min(h, y0 + th), x0, min(w, x0 + tw)


class _Buffers:
    """Full-size buffers, in RAM up to a limit, memory-mapped files beyond it.

    Pages of a file mapping count in the process's RSS once touched, so after each tile
    row the mapped buffers are written back and their pages dropped from this process
    (``madvise(MADV_DONTNEED)`` on a shared file mapping: the data stays in the file and
    the page cache, which the kernel reclaims under pressure, never an OOM kill).
    """

    def __init__(self, ram_bytes: int, spill_dir: str) -> None:
        self.ram_bytes, self.spill_dir = ram_bytes, spill_dir or None
        self.in_ram = 0
        self.peak = 0
        self.spilled = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._maps: list[np.memmap] = []
        self._n = 0

    def alloc(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if self.ram_bytes and self.in_ram + nbytes > self.ram_bytes:
            if self._dir is None:
                self._dir = tempfile.TemporaryDirectory(prefix="robust-style-tiles-",
                                                        dir=self.spill_dir)
            self._n += 1
            self.spilled += nbytes
            mm = np.memmap(f"{self._dir.name}/{self._n}.bin", dtype=dtype, mode="w+",
                           shape=shape)
            self._maps.append(mm)
            return mm
        self.in_ram += nbytes
        self.peak = max(self.peak, self.in_ram)
        return np.empty(shape, dtype)

    def release_pages(self) -> None:
        """Write mapped buffers back and drop their pages from this process's RSS."""
        for mm in self._maps:
            raw = getattr(mm, "_mmap", None)
            if raw is None:
                continue
            with contextlib.suppress(OSError, ValueError, AttributeError):
                raw.flush()
                raw.madvise(mmap.MADV_DONTNEED)

    def free(self, arr: np.ndarray) -> None:
        if isinstance(arr, np.memmap):
            self._maps = [m for m in self._maps if m is not arr]
        else:
            self.in_ram -= arr.nbytes

    def close(self) -> None:
        self._maps.clear()
        if self._dir is not None:
            self._dir.cleanup()


class TiledRunner:
    """Run a split model over tiles on compiled parts; ``run`` has an engine's contract."""

    def __init__(self, split: SplitModel, compile_part: Callable[[bytes], PartRunner],
                 config: TileConfig | None = None, keep_parts: bool = True) -> None:
        """``keep_parts=False``: compile each part when its segment starts and drop it when
        the segment is done, for runtimes whose compiled models keep the memory of the
        largest shape they ran (OpenVINO): then one part's memory is live at a time."""
        self.split = split
        self.config = config or TileConfig()
        self._compile = compile_part
        self.parts: list[PartRunner | None] = (
            [compile_part(s.model) for s in split.segments] if keep_parts
            else [None] * len(split.segments))
        self._keep_parts = keep_parts
        self._group_parts: dict[tuple[int, int], PartRunner] = {}
        #: Bytes the last run kept in RAM buffers at most, and in memory-mapped ones.
        self.last_buffer_bytes = (0, 0)

    def _steps(self, group: tuple[int, int] | None
               ) -> Iterator[tuple[int, int, Segment, PartRunner | None]]:
        """The split's steps (:meth:`SplitModel.steps`) with their compiled parts (None:
        compile for this run)."""
        for first, last, seg in self.split.steps(group):
            if first == last:
                yield first, last, seg, self.parts[first]
                continue
            assert group is not None
            if self._keep_parts and group not in self._group_parts:
                self._group_parts[group] = self._compile(seg.model)
            yield first, last, seg, self._group_parts.get(group)

    def halo(self, k: int) -> int:
        """Halo of segment ``k`` in working-resolution pixels (radius rounded to the grid)."""
        a = self.split.align
        return -(-self.split.segments[k].radius // a) * a

    def _keep(self, kept: dict[str, np.ndarray], names: tuple[str, ...],
              core: tuple[int, int, int, int], origin: tuple[int, int], size: tuple[int, int],
              sums: tuple[np.ndarray, np.ndarray] | None, outs: list[np.ndarray]) -> None:
        """Copy the core of one tile's outputs (without the halo) into the full-size
        buffers and add its statistics to ``sums``; ``outs`` may be the runtime's buffers."""
        (y0, y1, x0, x1), (ay, ax), (h, w) = core, origin, size
        for t, o in zip(names, outs, strict=False):
            if t == OUTPUT_NAME:
                kept[t][:, y0:min(y1, h), x0:min(x1, w)] = \
                    o[:, y0 - ay:min(y1, h) - ay, x0 - ax:min(x1, w) - ax]
                continue
            s = self.split.scale[t]
            kept[t][:, :, y0 // s:y1 // s, x0 // s:x1 // s] = \
                o[:, :, (y0 - ay) // s:(y1 - ay) // s, (x0 - ax) // s:(x1 - ax) // s]
        if sums is not None:
            sums[0][:] += outs[-2]
            sums[1][:] += outs[-1]

    def run(self, batch: np.ndarray, tile: int = 0, ram_bytes: int | None = None,
            group: tuple[int, int] | None = None) -> np.ndarray:
        """``NxHxWx3 uint8`` -> the same, stylised, tile by tile with whole-image norms
        (``tile``, ``ram_bytes``: this run's tile side and RAM for buffers; default: the
        config's). ``group``: a key of :attr:`SplitModel.groups`, run on the whole image
        at once instead of tile by tile (the caller has checked that its memory fits)."""
        x = np.ascontiguousarray(batch)
        n, h, w, _ = x.shape
        sp, cfg = self.split, self.config
        hp, wp = sp.working_size(h, w)
        tile = max(sp.align, (tile or cfg.tile) // sp.align * sp.align)
        bufs = _Buffers(cfg.ram_bytes if ram_bytes is None else ram_bytes, cfg.spill_dir)
        kept: dict[str, np.ndarray] = {INPUT_NAME: x}
        affine: dict[str, np.ndarray] = {}
        try:
            for first, last, seg, kept_part in self._steps(group):
                whole = last > first
                part = kept_part if kept_part is not None else self._compile(seg.model)
                halo = 0 if whole else self.halo(first)
                for t in seg.outputs:
                    if t == OUTPUT_NAME:
                        kept[t] = np.empty((n, h, w, 3), np.uint8)
                    else:
                        s = sp.scale[t]
                        kept[t] = bufs.alloc((n, sp.channels[t], hp // s, wp // s), sp.dtype[t])
                target = seg.outputs[0]
                stats = target != OUTPUT_NAME
                if stats:
                    c, ts = sp.channels[target], sp.scale[target]
                    total = np.zeros((n, c), np.float64)
                    total_sq = np.zeros((n, c), np.float64)
                norm_feeds = {name: affine[name] for j in seg.norms
                              for name in (f"rs_norm{j}_mul", f"rs_norm{j}_add")}
                last_row = -1
                windows = [(0, hp, 0, wp)] if whole else tiles(hp, wp, tile, sp.align)
                for y0, y1, x0, x1 in windows:
                    if y0 != last_row:
                        bufs.release_pages()
                        last_row = y0
                    ay, by = max(0, y0 - halo), min(hp, y1 + halo)
                    ax, bx = max(0, x0 - halo), min(wp, x1 + halo)
                    feeds = dict(norm_feeds)
                    for t, name in zip(seg.inputs, seg.feeds, strict=True):
                        if t == INPUT_NAME:
                            feeds[name] = np.ascontiguousarray(x[:, ay:min(by, h), ax:min(bx, w)])
                        else:
                            s = sp.scale[t]
                            feeds[name] = np.ascontiguousarray(
                                kept[t][:, :, ay // s:by // s, ax // s:bx // s])
                    if stats:
                        feeds["rs_crop_starts"] = np.array([(y0 - ay) // ts, (x0 - ax) // ts],
                                                           np.int64)
                        feeds["rs_crop_ends"] = np.array([(y1 - ay) // ts, (x1 - ax) // ts],
                                                         np.int64)
                    part.consume(feeds, functools.partial(
                        self._keep, kept, seg.outputs, (y0, y1, x0, x1), (ay, ax), (h, w),
                        (total, total_sq) if stats else None))
                del part  # a part compiled for this run only frees its memory here
                if stats:
                    count = (hp // ts) * (wp // ts)
                    mean = total / count
                    var = np.maximum(total_sq / count - mean * mean, 0.0)
                    eps, gamma, beta = sp.norms[last]
                    mul = gamma[None] / np.sqrt(var + eps)
                    affine[f"rs_norm{last}_mul"] = mul.astype(np.float32)[:, :, None, None]
                    affine[f"rs_norm{last}_add"] = (beta[None] - mean * mul).astype(
                        np.float32)[:, :, None, None]
                for t in [t for t, end in sp.last_use.items() if first <= end <= last]:
                    if t != INPUT_NAME and t in kept:
                        bufs.free(kept.pop(t))
            self.last_buffer_bytes = (bufs.peak, bufs.spilled)
            return kept[OUTPUT_NAME]
        finally:
            kept.clear()
            with contextlib.suppress(OSError):
                bufs.close()
