"""Fixtures of the server tests: small real exported models, real photos, real servers."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import skimage_photo
from PIL import Image

from robust_style.server.app import ServerConfig, StyleServer
from robust_style.server.batching import BatchConfig
from robust_style.server.dataplane import Limits
from robust_style.server.engines import EngineConfig
from robust_style.server.registry import RegistryConfig


def export_tiny(path: Path, name: str, seed: int) -> Path:
    torch = pytest.importorskip("torch")
    from robust_style.contract import StyleMetadata
    from robust_style.export import export_onnx
    from robust_style.transformer_net import TransformerNet, TransformerNetConfig

    torch.manual_seed(seed)
    net = TransformerNet(TransformerNetConfig(channels=(8, 16, 32), num_residual=1))
    return export_onnx(net, path, StyleMetadata(name=name, description=f"test style {name}"))


def new_version(src: Path, dst: Path, name: str | None = None, factor: float = -1.0) -> Path:
    """Different weights (a retrained model), same style name unless ``name`` is given."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = numpy_helper.to_array(init).copy()
    arr *= factor
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    if name is not None:
        for prop in model.metadata_props:
            if prop.key == "robust_style.name":
                prop.value = name
    tmp = dst.with_name("." + dst.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(dst)
    return dst


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny.onnx`` (style "tiny"), ``tiny2.onnx`` ("tiny2"), ``tiny_v2.onnx`` ("tiny" again)."""
    # Each test module that imports this fixture gets its own instance, so the files are
    # kept in the session's base temp dir and exported once.
    root = tmp_path_factory.getbasetemp() / "server_model_store"
    if not (root / "tiny_v2.onnx").is_file():
        root.mkdir(exist_ok=True)
        export_tiny(root / "tiny.onnx", "tiny", 0)
        new_version(root / "tiny.onnx", root / "tiny2.onnx", name="tiny2", factor=0.5)
        new_version(root / "tiny.onnx", root / "tiny_v2.onnx")
    return root


@pytest.fixture()
def models_dir(model_store: Path, tmp_path: Path) -> Path:
    """A fresh directory with tiny.onnx and tiny2.onnx."""
    d = tmp_path / "models"
    d.mkdir()
    for name in ("tiny.onnx", "tiny2.onnx"):
        shutil.copy(model_store / name, d / name)
    return d


def start_server(models: Path, **kw: object) -> StyleServer:
    batch = kw.pop("batch", BatchConfig(max_batch=0))
    poll = kw.pop("poll_seconds", 0.0)
    limits = kw.pop("limits", Limits(max_pixels=1_000_000))
    engine = kw.pop("engine", EngineConfig())
    reg = RegistryConfig(models_dir=models, batch=batch, poll_seconds=poll, warmup_side=32,  # type: ignore[arg-type]
                         engine=engine)  # type: ignore[arg-type]
    cfg = ServerConfig(registry=reg, port=0, metrics_port=0, limits=limits, grace_seconds=5.0,
                       **kw)  # type: ignore[arg-type]
    server = StyleServer(cfg).start()
    server.wait_ready(60)
    return server


@pytest.fixture()
def server(models_dir: Path) -> Iterator[StyleServer]:
    s = start_server(models_dir)
    yield s
    s.stop(0)


def photo(name: str = "astronaut", side: int = 96) -> np.ndarray:
    """A real photo, resized so its longer side is ``side`` (aspect kept; odd sizes happen)."""
    arr = skimage_photo(name)
    img = Image.fromarray(arr)
    scale = side / max(img.size)
    img = img.resize((max(8, round(img.width * scale)), max(8, round(img.height * scale))))
    return np.asarray(img)


def encode(arr: np.ndarray, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
