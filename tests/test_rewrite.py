"""The faster inference form computes the trained network's function: every layer and every size."""
import pytest
import torch

from fststyle import Stylizer
from fststyle.infer.rewrite import SpaceToDepthConv, SubPixelUpsample, faster_equivalent
from fststyle.infer.stylizer import AlignedTransformer
from fststyle.nets.transformer import ConvLayer, TransformerConfig, TransformerNet, Upsample


def trained_like(config: TransformerConfig = TransformerConfig(), seed: int = 0) -> TransformerNet:
    """Random weights, and instance-norm affines away from (1, 0) as after training."""
    torch.manual_seed(seed)
    net = TransformerNet(config).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.InstanceNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return net


@pytest.mark.parametrize("shape", [(1, 16, 7, 9), (2, 16, 2, 3), (1, 16, 12, 5)])
def test_sub_pixel_upsample_equals_resize_pad_conv(shape):
    torch.manual_seed(0)
    layer = Upsample(16, 8, "nearest").eval()
    x = torch.randn(shape)
    with torch.no_grad():
        assert (SubPixelUpsample(layer)(x) - layer(x)).abs().max() < 1e-5


@pytest.mark.parametrize("kernel,shape", [(9, (1, 8, 20, 28)), (9, (2, 8, 8, 12)), (7, (1, 8, 16, 12)), (5, (1, 8, 8, 8))])
def test_space_to_depth_conv_equals_conv(kernel, shape):
    torch.manual_seed(0)
    layer = ConvLayer(8, 3, kernel, norm=False, relu=False).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        assert (SpaceToDepthConv(layer)(x) - layer(x)).abs().max() < 1e-5


@pytest.mark.parametrize("shape", [(1, 3, 64, 96), (2, 3, 37, 51), (1, 3, 20, 24)])
def test_whole_network_is_unchanged(shape):
    net = trained_like()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fast = faster_equivalent(net)
    assert sum(isinstance(m, (SubPixelUpsample, SpaceToDepthConv)) for m in fast.modules()) == 3
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the original is left as it was
    x = torch.rand(shape)
    with torch.no_grad():
        assert (AlignedTransformer(fast)(x) - AlignedTransformer(net)(x)).abs().max() < 1e-5


def test_other_architectures():
    """Transposed up-sampling keeps its layers (only the last conv is rewritten); other widths work."""
    for config in [TransformerConfig(upsample="transpose"), TransformerConfig(base_channels=8, residual_blocks=1)]:
        net = trained_like(config)
        fast = faster_equivalent(net)
        x = torch.rand(1, 3, 40, 56)
        with torch.no_grad():
            assert (fast(x) - net(x)).abs().max() < 1e-5
    assert not any(isinstance(m, SubPixelUpsample) for m in faster_equivalent(trained_like(TransformerConfig(upsample="transpose"))).modules())


def test_stylizer_uses_it_and_leaves_the_callers_net_alone():
    net = trained_like()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(1, 3, 48, 64)
    fast, plain = Stylizer(net, precision="bf16"), Stylizer(net, precision="bf16", rewrite=False)
    assert any(isinstance(m, SubPixelUpsample) for m in fast.net.modules())
    assert not any(isinstance(m, SubPixelUpsample) for m in plain.net.modules())
    assert all(v.dtype == torch.float32 and torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert (fast(x) - plain(x)).abs().mean() < 1 / 255  # bf16 rounding differs, the function does not


def test_torchscript_compiles_it():
    net = faster_equivalent(trained_like(TransformerConfig(base_channels=8, residual_blocks=1)))
    scripted = torch.jit.script(AlignedTransformer(net))
    x = torch.rand(1, 3, 30, 45)
    with torch.no_grad():
        assert (scripted(x) - AlignedTransformer(net)(x)).abs().max() < 1e-6


def test_a_network_on_2x2_blocks_is_padded_to_its_stride_and_scripts():
    net = faster_equivalent(trained_like(TransformerConfig(base_channels=8, residual_blocks=1, end_kernel=3, block=2)))
    aligned = AlignedTransformer(net)
    assert aligned.align == 8
    x = torch.rand(1, 3, 30, 45)
    padded = torch.nn.functional.pad(x, (0, 3, 0, 2), mode="reflect")
    with torch.no_grad():
        assert (aligned(x) - net(padded)[:, :, :30, :45]).abs().max() < 1e-6
        assert (torch.jit.script(aligned)(x) - aligned(x)).abs().max() < 1e-6
