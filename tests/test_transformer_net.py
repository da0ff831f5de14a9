import pytest
import torch

from robust_style.transformer_net import TransformerNet, TransformerNetConfig


@pytest.fixture(scope="module")
def net() -> TransformerNet:
    torch.manual_seed(0)
    return TransformerNet().eval()


def test_parameter_count_is_johnsons(net: TransformerNet) -> None:
    assert 1.6e6 < net.num_parameters() < 1.8e6


@pytest.mark.parametrize("shape", [(1, 3, 37, 53), (2, 3, 64, 64), (1, 3, 338, 101),
                                   (1, 3, 8, 8), (1, 3, 9, 13)])
def test_output_keeps_exact_size_and_range(net: TransformerNet, shape: tuple[int, ...]) -> None:
    # Push the network's pre-activation far out of range: the output still stays in [0, 1].
    with torch.no_grad():
        y = net(torch.rand(*shape) * 4 - 2)
    assert y.shape == shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_no_transposed_convolutions_and_instance_norm(net: TransformerNet) -> None:
    kinds = {type(m).__name__ for m in net.modules()}
    assert "ConvTranspose2d" not in kinds
    assert "InstanceNorm2d" in kinds and "BatchNorm2d" not in kinds
    assert sum(isinstance(m, torch.nn.ReflectionPad2d) for m in net.modules()) >= 10


def test_gradients_flow_to_all_parameters(net: TransformerNet) -> None:
    net = TransformerNet().train()
    net(torch.rand(2, 3, 33, 35)).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_config_round_trip() -> None:
    cfg = TransformerNetConfig(channels=(16, 32, 64), num_residual=3)
    assert TransformerNetConfig.from_dict(cfg.to_dict()) == cfg
    small = TransformerNet(cfg)
    assert small.num_parameters() < TransformerNet().num_parameters()


def test_bf16_channels_last_activations_reach_every_convolution_unconverted() -> None:
    """Under bf16 autocast with channels_last, each convolution after the first gets a bf16
    NHWC input: no float32 round trip around the paddings, no layout change after the
    instance norms (docs/training.md, "Speed")."""
    net = TransformerNet().to(memory_format=torch.channels_last).train()
    seen: list[tuple[torch.dtype, bool]] = []
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_pre_hook(lambda _m, args: seen.append(
                (args[0].dtype, args[0].is_contiguous(memory_format=torch.channels_last))))
    x = torch.rand(2, 3, 32, 36).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net(x).float().mean().backward()
    assert len(seen) == 16
    assert seen[0] == (torch.float32, True)  # the image itself
    assert seen[1:] == [(torch.bfloat16, True)] * 15
