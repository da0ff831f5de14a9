"""Where the judges' weights come from: the weights registry and its cache.

Each judge accepts several registered files, tried in order (the first cached one wins):

=========  ====================================================================
VGG-19     ``vgg19-caffe`` (the converted ``.pth``), ``vgg19-caffe-keras`` (Keras' ``.h5``
           release, converted on import)
AlexNet    ``alexnet`` (torchvision's file), ``alexnet-features`` (features only)
LPIPS      ``lpips-alex-v0.1``; if it is not cached, the identical ``alex.pth`` that the
           ``lpips`` package ships, used only if its sha256 is the registry's
=========  ====================================================================

A judge whose weights are missing raises a one-line :class:`UserError` saying how to get
them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from robust_style.errors import UserError

__all__ = ["JUDGE_ENTRIES", "JudgeWeights", "find_judge_weights"]

log = logging.getLogger(__name__)

#: Registry names per judge network, in order of preference.
JUDGE_ENTRIES: dict[str, tuple[str, ...]] = {
    "vgg19": ("vgg19-caffe", "vgg19-caffe-keras"),
    "alexnet": ("alexnet", "alexnet-features"),
    "lpips": ("lpips-alex-v0.1",),
}
_HOW = {
    "vgg19": "`robust-style weights download vgg19-caffe-keras` (Keras' VGG-19 release, "
             "converted; or `weights import vgg19-caffe-keras FILE.h5`) or `robust-style "
             "weights import vgg19-caffe FILE`",
    "alexnet": "`robust-style weights download alexnet` (torchvision's AlexNet) or "
               "`robust-style weights import alexnet-features FILE`",
    "lpips": "`robust-style weights download lpips-alex-v0.1` (or pip install lpips, "
             "which ships the file)",
}
_WHAT = {"vgg19": "the VGG-19 style judge", "alexnet": "the AlexNet style judge and LPIPS",
         "lpips": "the LPIPS content judge"}


@dataclass(frozen=True)
class JudgeWeights:
    """Files of the judge networks; ``None`` = not available."""

    vgg19: Path | None = None
    alexnet: Path | None = None
    lpips: Path | None = None

    def require(self, judge: str) -> Path:
        """The file for ``judge`` (``vgg19``, ``alexnet``, ``lpips``) or a one-line error."""
        path = getattr(self, judge)
        if path is None:
            raise UserError(f"{_WHAT[judge]} needs weights that are not in the cache; get them "
                            f"with {_HOW[judge]}")
        return Path(path)


def _lpips_package_file(sha256: str | None) -> Path | None:
    """The ``alex.pth`` inside the installed ``lpips`` package, if it is the registry's file."""
    if not sha256:
        return None
    try:
        import importlib.util

        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "alex.pth"
    if not path.is_file():
        return None
    from robust_style.perceptual.weights.cache import file_sha256

    if file_sha256(path) != sha256:
        log.warning("%s is not the registered LPIPS v0.1 alex.pth (sha256 differs); not used",
                    path)
        return None
    return path


def find_judge_weights(home: Path | None = None) -> JudgeWeights:
    """Look the judge networks up in the registry and the cache (never downloads).

    Raises:
        UserError: a cached file is corrupt (its sha256 changed).
    """
    from robust_style.perceptual.weights import cached_path, load_registry, resolve_backbone

    reg = load_registry()
    found: dict[str, Path | None] = {}
    for judge, names in JUDGE_ENTRIES.items():
        found[judge] = None
        for name in names:
            if name in reg and cached_path(name, home).is_file():
                found[judge] = resolve_backbone(name, None, home=home, registry=reg)[1]
                break
    if found["lpips"] is None and "lpips-alex-v0.1" in reg:
        found["lpips"] = _lpips_package_file(reg["lpips-alex-v0.1"].sha256)
    return JudgeWeights(**found)
