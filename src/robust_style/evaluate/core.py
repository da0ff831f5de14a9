"""``evaluate``: style models x held-out photos, scored by independent judges.

For each model and each photo: the photo (shorter side resized to ``size``) is stylised,
timed, and judged: style distance to the artwork under VGG-19 and AlexNet, content
distance (LPIPS) to the photo (:mod:`robust_style.evaluate.judges`). The scores come back
as :class:`EvalResult`; :mod:`robust_style.evaluate.report` writes them as a table (CSV,
Markdown, terminal) and a picture grid.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from robust_style.errors import UserError
from robust_style.evaluate.judges import GramJudge, LpipsJudge
from robust_style.evaluate.stylizers import Stylizer, load_stylizer, training_photos
from robust_style.evaluate.weights import JudgeWeights, find_judge_weights

__all__ = ["JUDGES", "EvalConfig", "EvalResult", "Judges", "PhotoScore", "evaluate",
           "load_photos"]

log = logging.getLogger(__name__)

#: Judge names, also the score columns.
JUDGES = ("style_vgg19", "style_alexnet", "content_lpips")


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation.

    Attributes:
        models: ``.onnx`` files, run folders, ``style_model.pt`` files or checkpoints.
        artwork: the painting the models imitate.
        photos: folder of held-out photos (searched recursively).
        size: shorter side the photos are resized to before stylising (0 = as they are).
        judge_size: shorter side at which the style judges compare Gram matrices.
        max_photos: use at most this many photos (sorted by path); ``None`` = all.
        judges: which of :data:`JUDGES` to run.
        device: torch device of the judges.
        trust: allow full unpickling of torch model files.
        home: robust-style home of the weights cache (``None``: the default).
        progress: show a progress bar.
    """

    models: tuple[str | Path, ...]
    artwork: str | Path
    photos: str | Path
    size: int = 256
    judge_size: int = 256
    max_photos: int | None = None
    judges: tuple[str, ...] = JUDGES
    device: str = "cpu"
    trust: bool = False
    home: Path | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.models:
            raise UserError("give at least one style model to evaluate")
        if self.size != 0 and self.size < 16:
            raise UserError(f"--size must be 0 (as is) or at least 16, not {self.size}")
        if self.judge_size < 32:
            raise UserError(f"--judge-size must be at least 32, not {self.judge_size}")
        if self.max_photos is not None and self.max_photos < 1:
            raise UserError(f"--max-photos must be at least 1, not {self.max_photos}")
        unknown = sorted(set(self.judges) - set(JUDGES))
        if unknown or not self.judges:
            raise UserError(f"unknown judge(s) {', '.join(unknown) or '(none given)'}; "
                            f"choose from {', '.join(JUDGES)}")


@dataclass(frozen=True)
class PhotoScore:
    """One model on one photo. A judge that was not run scores NaN."""

    model: str
    photo: str
    width: int
    height: int
    style_vgg19: float
    style_alexnet: float
    content_lpips: float
    ms: float  # wall-clock time of the model on this photo

    def score(self, judge: str) -> float:
        return float(getattr(self, judge))


@dataclass(frozen=True)
class EvalResult:
    """Scores per model and photo, and the pictures for the grid."""

    config: EvalConfig
    models: tuple[str, ...]
    photos: tuple[str, ...]
    rows: tuple[PhotoScore, ...]
    artwork_image: np.ndarray = field(repr=False)
    photo_images: tuple[np.ndarray, ...] = field(repr=False)
    results: dict[tuple[str, str], np.ndarray] = field(repr=False)

    def for_model(self, model: str) -> list[PhotoScore]:
        return [r for r in self.rows if r.model == model]

    def mean(self, model: str, judge: str) -> float:
        """Mean of ``judge`` over the photos (NaN if the judge was not run)."""
        values = [r.score(judge) for r in self.for_model(model)]
        return float(np.mean(values)) if values else math.nan

    def median_ms(self, model: str) -> float:
        return float(statistics.median(r.ms for r in self.for_model(model)))


class Judges:
    """The judges for one artwork, loaded once, usable on tensors.

    ``score(photo, result)`` takes two ``(1, 3, H, W)`` [0, 1] tensors of one size and
    returns ``{judge: distance}`` for the judges asked for. Training code can call it on its
    own samples.
    """

    def __init__(self, artwork: torch.Tensor, *, judges: Sequence[str] = JUDGES,
                 weights: JudgeWeights | None = None, judge_size: int = 256,
                 device: str | torch.device = "cpu", home: Path | None = None) -> None:
        weights = weights if weights is not None else find_judge_weights(home)
        self.names = tuple(judges)
        self.gram: list[GramJudge] = []
        if "style_vgg19" in self.names:
            self.gram.append(GramJudge.vgg19(weights.require("vgg19"), artwork,
                                             size=judge_size, device=device))
        if "style_alexnet" in self.names:
            self.gram.append(GramJudge.alexnet(weights.require("alexnet"), artwork,
                                               size=judge_size, device=device))
        self.lpips = (LpipsJudge(weights.require("alexnet"), weights.require("lpips"),
                                 device=device) if "content_lpips" in self.names else None)

    def score(self, photo: torch.Tensor, result: torch.Tensor) -> dict[str, float]:
        out = {name: math.nan for name in JUDGES}
        for judge in self.gram:
            out[judge.name] = judge.distance(result)
        if self.lpips is not None:
            out["content_lpips"] = self.lpips.distance(photo, result)
        return out


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0


def _read_rgb(path: Path, size: int) -> np.ndarray:
    """``HxWx3 uint8`` by the one decoder, shorter side resized to ``size`` (0 = as is)."""
    from robust_style.imageio import load_rgb, resize_shorter_side

    return np.asarray(resize_shorter_side(load_rgb(path), size), dtype=np.uint8)


def load_photos(folder: str | Path, size: int, max_photos: int | None = None
                ) -> tuple[list[Path], list[np.ndarray]]:
    """The photos of ``folder`` as ``HxWx3 uint8`` arrays (shorter side ``size``)."""
    from robust_style.imageio import list_images

    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise UserError(f"--photos must be a folder of photos, not a file: {root}")
    files = list_images(root)[:max_photos]
    return files, [_read_rgb(p, size) for p in files]


def _unique_labels(stylizers: Sequence[Stylizer]) -> None:
    seen: dict[str, int] = {}
    for s in stylizers:
        n = seen.get(s.label, 0)
        seen[s.label] = n + 1
        if n:
            s.label = f"{s.label}#{n + 1}"


def _warn_if_trained_on(stylizer: Stylizer, files: Sequence[Path]) -> None:
    trained = training_photos(stylizer)
    if trained is None:
        return
    overlap = [p for p in files if trained == p.resolve() or trained in p.resolve().parents]
    if overlap:
        log.warning("%s was trained on photos in %s; %d of the evaluation photos are there "
                    "(scores on training photos flatter a model)", stylizer.label, trained,
                    len(overlap))


def evaluate(config: EvalConfig, *, weights: JudgeWeights | None = None) -> EvalResult:
    """Run every model on every photo and judge the results (see the module docstring).

    ``weights`` overrides the judge files found in the cache (tests, notebooks).

    Raises:
        UserError: a missing artwork, photo folder or model, an empty folder, an
            unreadable model, or judge weights that are not cached (one line each).
    """
    artwork_path = Path(config.artwork)
    if not artwork_path.is_file():
        raise UserError(f"artwork not found: {artwork_path}")
    artwork = _read_rgb(artwork_path, 0)
    files, photos = load_photos(config.photos, config.size, config.max_photos)
    stylizers = [load_stylizer(m, trust=config.trust) for m in config.models]
    _unique_labels(stylizers)
    for s in stylizers:
        _warn_if_trained_on(s, files)
    judges = Judges(_to_tensor(artwork), judges=config.judges, weights=weights,
                    judge_size=config.judge_size, device=config.device, home=config.home)

    rows: list[PhotoScore] = []
    results: dict[tuple[str, str], np.ndarray] = {}
    labels = [s.label for s in stylizers]
    names = [p.name if labels.count(p.name) < 2 else str(p) for p in files]
    bar = tqdm(total=len(stylizers) * len(files), desc="evaluate", unit="image",
               disable=not config.progress, leave=False)
    try:
        for s in stylizers:
            s(photos[0][:32, :32])  # warm-up: the first run pays for allocation and tuning
            for path, name, photo in zip(files, names, photos, strict=True):
                t0 = time.perf_counter()
                out = s(photo)
                ms = (time.perf_counter() - t0) * 1000.0
                if out.shape != photo.shape or out.dtype != np.uint8:
                    raise UserError(f"{s.source} returned a {out.dtype} {out.shape} image for "
                                    f"the {photo.shape} photo {path}; expected uint8 of the "
                                    "same size")
                scores = judges.score(_to_tensor(photo), _to_tensor(out))
                rows.append(PhotoScore(s.label, name, photo.shape[1], photo.shape[0],
                                       scores["style_vgg19"], scores["style_alexnet"],
                                       scores["content_lpips"], ms))
                results[(s.label, name)] = out
                bar.update(1)
    finally:
        bar.close()
    return EvalResult(config, tuple(labels), tuple(names), tuple(rows), artwork, tuple(photos),
                      results)
