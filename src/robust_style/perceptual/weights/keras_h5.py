"""Import Keras' VGG-19 release (``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``).

Keras distributes the Oxford VGG-19 (converted from the original Caffe model, BGR input,
0..255 minus the mean) as an HDF5 file and pins its md5,
``253f8cb515780f3b799900260a226db6`` (``keras.applications.vgg19``), which is what a user
who has ever run Keras has on disk (``~/.keras/models/``). :func:`import_keras_vgg19`
checks that md5, converts the 16 convolutions to a ``torchvision.models.vgg19().features``
state dict (kernels ``H×W×in×out`` to ``out×in×H×W``; conv1_1's input channels flipped from
BGR to RGB so the network takes RGB, like the project's other Caffe backbones), saves it,
checks it loads strictly as ``vgg19-caffe`` and installs it in the cache under the
registry entry (``vgg19-caffe-keras``), recording the h5's md5 as the source.

Needs ``h5py`` (in the ``train`` extra).
"""

from __future__ import annotations

import logging
from pathlib import Path

from robust_style.errors import UserError
from robust_style.perceptual.weights.cache import cache_dir, cached_path, temp_path
from robust_style.perceptual.weights.registry import WeightsEntry
from robust_style.perceptual.weights.store import (
    CheckResult,
    MismatchError,
    check_file,
    file_md5,
    install,
)

__all__ = ["KERAS_VGG19_NOTOP_MD5", "convert_keras_vgg19", "import_keras_vgg19",
           "install_keras_vgg19", "is_hdf5"]

log = logging.getLogger(__name__)

#: The md5 ``keras.applications.vgg19`` pins for the no-top weights file.
KERAS_VGG19_NOTOP_MD5 = "253f8cb515780f3b799900260a226db6"
_BLOCKS = (2, 2, 4, 4, 4)
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: str | Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == _HDF5_MAGIC


def _md5(path: Path) -> str:
    return file_md5(path)


def convert_keras_vgg19(path: str | Path) -> dict:
    """The Keras VGG-19 h5 as a ``vgg19().features`` state dict (RGB input, Caffe scale)."""
    try:
        import h5py
    except ModuleNotFoundError as exc:
        raise UserError("importing a Keras .h5 file needs h5py: "
                        "pip install 'robust-style[train]'") from exc
    import numpy as np
    import torch

    sd: dict[str, torch.Tensor] = {}
    index = 0
    try:
        with h5py.File(path, "r") as f:
            for block, n in enumerate(_BLOCKS, start=1):
                for i in range(1, n + 1):
                    group = f[f"block{block}_conv{i}"]
                    names = [x.decode() if isinstance(x, bytes) else str(x)
                             for x in group.attrs["weight_names"]]
                    kernel = np.asarray(group[names[0]], dtype=np.float32)
                    bias = np.asarray(group[names[1]], dtype=np.float32)
                    w = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
                    if index == 0:
                        w = w.flip(1)  # BGR -> RGB input channels
                    sd[f"{index}.weight"] = w.contiguous()
                    sd[f"{index}.bias"] = torch.from_numpy(bias.copy())
                    index += 2  # conv, relu
                index += 1  # pool
    except (OSError, KeyError, IndexError, ValueError) as exc:
        raise UserError(f"{path} is not Keras' VGG-19 weights file: {exc}") from None
    return sd


def install_keras_vgg19(entry: WeightsEntry, src: Path, *, source: str,
                        home: Path | None = None) -> tuple[Path, CheckResult]:
    """Check the h5's md5, convert, check the result loads, install it as ``entry``."""
    import torch

    md5, pinned = _md5(src), entry.md5 or KERAS_VGG19_NOTOP_MD5
    if md5 != pinned:
        raise MismatchError(f"md5 {md5} of {src}, but Keras pins {pinned} "
                            "for vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")
    sd = convert_keras_vgg19(src)
    cache_dir(home).mkdir(parents=True, exist_ok=True)
    tmp = temp_path(cached_path(entry, home))
    try:
        torch.save(sd, tmp)
        result = check_file(entry, tmp, progress=False)
        dest = install(entry, tmp, result, source=f"{source} (md5 {md5})", home=home)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest, result


def import_keras_vgg19(entry: WeightsEntry, file: str | Path, *, home: Path | None = None
                       ) -> tuple[Path, CheckResult]:
    """``robust-style weights import vgg19-caffe-keras FILE.h5``."""
    src = Path(file).expanduser()
    if not src.is_file():
        raise UserError(f"file not found: {src}")
    try:
        return install_keras_vgg19(entry, src, source=f"keras-h5:{src.resolve()}", home=home)
    except MismatchError as exc:
        raise MismatchError(f"cannot import {src} as {entry.name}: {exc}") from None
