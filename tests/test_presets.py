"""Architecture presets (issue 23): each builds, trains, exports with its architecture in
the metadata, is read back from the file, and is served by a real server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from server_fixtures import decode, encode, photo, start_server

from robust_style.cli import main
from robust_style.server.client import StyleClient
from robust_style.transformer_net import TransformerNet, TransformerNetConfig, save_style_model
from robust_style.transformer_net.arch import ARCH_PRESETS, arch_name, arch_preset
from robust_style.transformer_net.config import TrainConfig
from robust_style.transformer_net.init_from import load_initial_net

FAST = [n for n in ARCH_PRESETS if n != "johnson"]


def test_johnson_is_the_default_and_old_configs_read_as_johnson() -> None:
    assert arch_preset("johnson") == TransformerNetConfig()
    # a net_config saved before presets existed: channels and blocks only
    assert TransformerNetConfig.from_dict({"channels": [32, 64, 128], "num_residual": 5}) == \
        ARCH_PRESETS["johnson"]
    old = TrainConfig.from_dict({"style": "a", "content": "b", "out": "c",
                                 "net_channels": [32, 64, 128], "net_residual": 5})
    assert old.net_config() == ARCH_PRESETS["johnson"]
    assert TrainConfig(style="a", content="b", out="c", arch="quarter").net_config() == \
        ARCH_PRESETS["quarter"]


@pytest.mark.parametrize("name", list(ARCH_PRESETS))
def test_preset_builds_and_keeps_the_image_size(name: str) -> None:
    cfg = arch_preset(name)
    assert arch_name(cfg) == name
    assert TransformerNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    net = TransformerNet(cfg).eval()
    with torch.no_grad():
        for h, w in ((8, 8), (37, 53)):  # the smallest side accepted, and odd sizes
            y = net(torch.rand(1, 3, h, w))
            assert y.shape == (1, 3, h, w) and torch.isfinite(y).all()
    if name != "johnson":
        assert net.num_parameters() < TransformerNet().num_parameters() / 3


def test_unknown_arch_is_one_line_exit_2(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    assert main(["train", "--style", "x.jpg", "--content", str(tmp_path), "--out",
                 str(tmp_path / "run"), "--arch", "tiny-tim"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tiny-tim" in err
    assert all(n in err for n in ARCH_PRESETS)


def test_fast_presets_export_read_back_and_serve(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    x = torch.from_numpy(photo("astronaut", 48).copy()).permute(2, 0, 1)[None].float() / 255
    for i, name in enumerate(FAST):
        torch.manual_seed(i)
        net = TransformerNet(arch_preset(name)).eval()
        run = tmp_path / f"run-{name}"
        save_style_model(run / "style_model.pt", net, {"name": f"s-{name}", "steps": 1})
        out = models / f"s-{name}.onnx"
        assert main(["-q", "export", str(run), "-o", str(out), "--verify-sizes",
                     "1x3x24x40"]) == 0
        props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert props["robust_style.arch"] == name
        assert TransformerNetConfig.from_dict(json.loads(props["robust_style.net_config"])) \
            == arch_preset(name)
        back = load_initial_net(out)  # the architecture comes back from the metadata
        assert back.config == arch_preset(name)
        with torch.no_grad():
            assert torch.allclose(back(x), net(x), atol=1e-5)
    server = start_server(models)
    try:
        img = photo("astronaut", 40)
        with StyleClient(server.address) as client:
            styles = {s.name: s for s in client.list_styles()}
            for name in FAST:
                info = styles[f"s-{name}"]
                assert info.ready and info.metadata.get("arch") == name
                out_img = decode(client.stylize(encode(img), f"s-{name}").image)
                assert out_img.shape == img.shape and np.ptp(out_img) > 0
    finally:
        server.stop(0)
