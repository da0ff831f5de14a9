"""Make checkpoints in the layouts MadryLab's ``robustness`` library writes.

``robustness.train`` saves ``{'model': AttackerModel-under-DataParallel.state_dict(),
'optimizer': ..., 'schedule': ..., 'epoch': ...}``; the state dict keys are
``module.normalizer.{new_mean,new_std}``, ``module.model.*``,
``module.attacker.normalize.{new_mean,new_std}`` and ``module.attacker.model.*``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import models


def madry_state_dict(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    sd: dict[str, torch.Tensor] = {
        "module.normalizer.new_mean": mean, "module.normalizer.new_std": std,
        "module.attacker.normalize.new_mean": mean.clone(),
        "module.attacker.normalize.new_std": std.clone(),
    }
    for k, v in net.state_dict().items():
        sd[f"module.model.{k}"] = v.clone()
        sd[f"module.attacker.model.{k}"] = v.clone()
    return sd


def random_resnet50(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = models.resnet50(weights=None)
    # Non-trivial BN statistics so a wrong normaliser or BN mode shows in the features.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def save_madry_checkpoint(path: Path, net: torch.nn.Module, *, wrapper: str = "model",
                          legacy: bool = False) -> Path:
    payload = {wrapper: madry_state_dict(net), "epoch": 90,
               "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
               "schedule": None}
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    return path


def rewrite_as_cuda_saved(path: Path) -> None:
    """Edit a zip checkpoint so its storages say they were saved on ``cuda:0``.

    Pickle protocol 2 writes the location as BINUNICODE ``X <len32> 'cpu'``; the edit
    swaps it for ``'cuda:0'``, exactly what a GPU machine writes.
    """
    import zipfile

    with zipfile.ZipFile(path) as zf:
        items = [(i, zf.read(i.filename)) for i in zf.infolist()]
    tmp = path.with_suffix(".cuda.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for info, data in items:
            if info.filename.endswith("data.pkl"):
                old = b"X\x03\x00\x00\x00cpu"
                assert old in data
                data = data.replace(old, b"X\x06\x00\x00\x00cuda:0")
            zf.writestr(info, data)
    tmp.replace(path)
