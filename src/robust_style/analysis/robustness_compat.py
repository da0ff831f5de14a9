"""The one compatibility layer for MadryLab's ``robustness`` library (1.2.1.post2).

``robustness`` (Engstrom, Ilyas, Salman, Santurkar, Tsipras 2019; MIT licence) trained
the robust ImageNet ResNet-50s that Nakano 2019 used as a style loss. Its last release
predates current PyTorch, and two things break on a CPU machine with torchvision >= 0.13:

1. **Import.** ``robustness.imagenet_models.{vgg,alexnet,squeezenet}`` do
   ``from torchvision.models.utils import load_state_dict_from_url``; that module was
   removed from torchvision (the function lives in ``torch.hub``). :func:`install_torchvision_shim`
   registers a tiny module under that name that re-exports ``torch.hub.load_state_dict_from_url``
   (only if the real one is missing), before ``robustness`` is imported.
2. **``.cuda()``.** ``model_utils.make_and_restore_model`` ends with ``model.cuda()``,
   ``train.train_model`` wraps the model in ``DataParallel(...).cuda()`` and moves the
   labels with ``target.cuda()``, and ``Attacker.forward`` does ``orig_input.cuda()``,
   all unconditionally. :func:`on_device` is a context manager that, while active,
   makes ``torch.Tensor.cuda`` and ``torch.nn.Module.cuda`` move to the chosen device
   instead (for a CUDA device it changes nothing). ``DataParallel`` on a machine with
   no GPU is a pass-through wrapper, so training and attacks run on the CPU unchanged.
   The patch is process-wide while the context is open (not thread-safe) and is
   always undone on exit.

Nothing else of ``robustness`` is changed: its training loop, PGD attacker, step
classes and checkpoint format are used as they are. The optional dependency is
installed with ``pip install 'robust-style[robustness]'``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import types
from collections.abc import Iterator
from typing import Any

import torch

from robust_style.errors import UserError

__all__ = ["ROBUSTNESS_VERSION", "import_robustness", "install_torchvision_shim", "on_device"]

log = logging.getLogger(__name__)

#: The release this layer was written and tested against.
ROBUSTNESS_VERSION = "1.2.1.post2"
_SHIM = "torchvision.models.utils"


def install_torchvision_shim() -> bool:
    """Make ``torchvision.models.utils.load_state_dict_from_url`` importable.

    Returns True if the shim was installed, False if torchvision still has the module.
    """
    if _SHIM in sys.modules:
        return False
    try:
        importlib.import_module(_SHIM)
        return False
    except ModuleNotFoundError:
        pass
    import torchvision.models

    shim = types.ModuleType(_SHIM)
    shim.__doc__ = "robust-style shim: torchvision.models.utils was removed in torchvision 0.13."
    shim.load_state_dict_from_url = torch.hub.load_state_dict_from_url  # type: ignore[attr-defined]
    sys.modules[_SHIM] = shim
    torchvision.models.utils = shim
    log.debug("installed %s shim for robustness", _SHIM)
    return True


def import_robustness() -> types.SimpleNamespace:
    """Import ``robustness`` (after the shim) and return its modules we use.

    Returns a namespace with ``datasets``, ``model_utils``, ``train``, ``defaults``,
    ``attacker`` and ``Parameters`` (``cox.utils.Parameters``, the args object
    ``train_model`` expects).

    Raises:
        UserError: ``robustness`` is not installed.
    """
    install_torchvision_shim()
    try:
        import warnings

        with warnings.catch_warnings():
            # train.py warns that NVIDIA apex (mixed precision on GPU) is missing.
            warnings.filterwarnings("ignore", message="Could not import amp")
            from cox.utils import Parameters
            from robustness import attacker, datasets, defaults, model_utils, train
    except ModuleNotFoundError as exc:
        raise UserError(f"this command needs MadryLab's robustness library ({exc.name} is "
                        "missing): pip install 'robust-style[robustness]'") from exc
    import robustness

    version = getattr(robustness, "__version__", None)
    if version and version != ROBUSTNESS_VERSION:
        log.warning("robustness %s is installed; this compatibility layer was tested with %s",
                    version, ROBUSTNESS_VERSION)
    return types.SimpleNamespace(datasets=datasets, model_utils=model_utils, train=train,
                                 defaults=defaults, attacker=attacker, Parameters=Parameters)


@contextlib.contextmanager
def on_device(device: str | torch.device) -> Iterator[torch.device]:
    """While active, ``.cuda()`` on tensors and modules moves them to ``device`` instead.

    For a CUDA ``device`` nothing is patched (``.cuda()`` already does the right thing).
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        yield dev
        return
    tensor_cuda, module_cuda = torch.Tensor.cuda, torch.nn.Module.cuda

    def tensor_to(self: torch.Tensor, *_args: Any, non_blocking: bool = False,
                  **_kwargs: Any) -> torch.Tensor:
        return self.to(dev, non_blocking=non_blocking)

    def module_to(self: torch.nn.Module, *_args: Any, **_kwargs: Any) -> torch.nn.Module:
        return self.to(dev)

    # deliberately looser signatures than the methods they stand in for
    torch.Tensor.cuda = tensor_to  # type: ignore[method-assign, assignment]
    torch.nn.Module.cuda = module_to  # type: ignore[method-assign, assignment]
    try:
        yield dev
    finally:
        torch.Tensor.cuda = tensor_cuda  # type: ignore[method-assign]
        torch.nn.Module.cuda = module_cuda  # type: ignore[method-assign]
