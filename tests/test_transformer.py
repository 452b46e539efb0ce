import pytest
import torch
import torch.nn.functional as F

from fststyle.errors import UserError
from fststyle.nets.transformer import ReflectionPad, TransformerConfig, TransformerNet


def test_default_net_is_johnsons():
    net = TransformerNet()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    # 3 down convs + 5 blocks x 2 + 2 up convs + final conv
    assert len(convs) == 3 + 10 + 2 + 1
    assert [c.kernel_size[0] for c in convs[:3]] == [9, 3, 3] and convs[-1].kernel_size == (9, 9)
    assert [c.out_channels for c in convs[:3]] == [32, 64, 128]
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) and m.affine for m in net.modules()) == 3 + 10 + 2
    assert sum(isinstance(m, torch.nn.ReflectionPad2d) for m in net.modules()) == 16
    # Parameter count of c9s1-32, d64, d128, 5xR128, u64, u32, c9s1-3 with affine instance norm.
    assert sum(p.numel() for p in net.parameters()) == 1_679_235


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 67, 45)])
@pytest.mark.parametrize("upsample", ["nearest", "bilinear", "transpose"])
def test_shapes_and_range(shape, upsample):
    net = TransformerNet(TransformerConfig(base_channels=8, residual_blocks=2, upsample=upsample))
    y = net(torch.rand(shape) * 4 - 2)
    assert y.shape == shape
    assert y.min() >= 0 and y.max() <= 1


def test_config_widths_and_blocks():
    net = TransformerNet(TransformerConfig(base_channels=16, residual_blocks=3))
    assert len(net.residuals) == 3
    assert net.encoder[2][1].out_channels == 64


def test_bad_upsample_is_a_user_error():
    with pytest.raises(UserError, match="upsample"):
        TransformerNet(TransformerConfig(upsample="pixelshuffle"))


def test_padding_keeps_bf16_under_autocast():
    """CPU autocast would pad in fp32 and the next convolution cast back: two copies per layer, both ways."""
    x = torch.randn(2, 8, 12, 10).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded = ReflectionPad(4)(x)
        plain = torch.nn.ReflectionPad2d(4)(x)
    assert padded.dtype == torch.bfloat16
    assert torch.equal(padded, plain.bfloat16())  # the same values: a pad only copies


@pytest.mark.parametrize("pad", [1, 4])
def test_training_padding_backward_is_reflection_pads_gradient(pad):
    """In training the pad's backward folds the border back with slices (ReflectPadSlices), not torch's kernel."""
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    layer = ReflectionPad(pad).train()
    assert torch.autograd.gradcheck(layer, (x,))
    grad = torch.randn(2, 3, 9 + 2 * pad, 11 + 2 * pad, dtype=torch.float64)
    ours = torch.autograd.grad(layer(x), x, grad)[0]
    torchs = torch.autograd.grad(torch.nn.functional.pad(x, (pad,) * 4, mode="reflect"), x, grad)[0]
    assert torch.allclose(ours, torchs, atol=1e-12)
    assert layer(x).grad_fn.name() != torch.nn.functional.pad(x, (pad,) * 4, mode="reflect").grad_fn.name()
    assert layer.eval()(x).grad_fn.name() == torch.nn.functional.pad(x, (pad,) * 4, mode="reflect").grad_fn.name()


def test_bf16_forward_is_unchanged_by_the_padding():
    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(base_channels=8, residual_blocks=1))
    x = torch.rand(1, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        now = net(x)
    for parent in net.modules():
        for name, child in parent.named_children():
            if isinstance(child, ReflectionPad):
                setattr(parent, name, torch.nn.ReflectionPad2d(child.padding))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        before = net(x)
    assert torch.equal(now, before)


def test_training_upsampling_is_the_same_function_with_the_same_gradients():
    """In training the nearest up-sampling runs as a 2x2 conv on the small image (nearest_upsample_conv)."""
    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(base_channels=8, residual_blocks=1))
    x = torch.rand(2, 3, 36, 28)
    grads = []
    for training in (True, False):
        net.train(training)
        net.zero_grad()
        y = net(x)
        (y * torch.linspace(0, 1, y.numel()).reshape(y.shape)).sum().backward()
        grads.append((y.detach(), [p.grad.clone() for p in net.parameters()]))
    (fast, fast_grads), (plain, plain_grads) = grads
    assert torch.allclose(fast, plain, atol=1e-6)
    for a, b in zip(fast_grads, plain_grads):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4)  # fp32 sums in another order


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 67, 45), (1, 3, 27, 21)])
@pytest.mark.parametrize("skips", [False, True])
def test_a_network_on_2x2_blocks_keeps_every_size_in_training_and_inference(shape, skips):
    net = TransformerNet(TransformerConfig(base_channels=8, residual_blocks=1, end_kernel=3, block=2, skips=skips))
    assert net.encoder[0][1].in_channels == 12 and net.decoder[-1][1].out_channels == 12  # 2x2 RGB pixels a position
    for training in (True, False):
        y = net.train(training)(torch.rand(shape))
        assert y.shape == shape and y.min() >= 0 and y.max() <= 1


def test_a_network_on_2x2_blocks_is_its_layers_between_space_to_depth_and_back():
    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(base_channels=8, residual_blocks=1, end_kernel=3, block=2)).eval()
    x = torch.rand(1, 3, 32, 48)
    by_hand = (torch.tanh(F.pixel_shuffle(net.on_blocks(F.pixel_unshuffle(x, 2)), 2) / 10) + 1) / 2
    with torch.no_grad():
        torch.testing.assert_close(net(x), by_hand)
    # the lattice the training loss watches is the network's whole stride
    assert net.config.stride == 8 and TransformerNet().config.stride == 4


def test_skips_add_each_encoder_output_to_the_decoder_at_its_resolution():
    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(base_channels=8, residual_blocks=1, skips=True)).eval()
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        first = net.encoder[0](x)
        half = net.encoder[1](first)
        y = net.decoder[1](net.decoder[0](net.residuals(net.encoder[2](half))) + half)
        torch.testing.assert_close(net(x), (torch.tanh(net.decoder[2](y + first) / 10) + 1) / 2)
        net.skips = False  # the same weights without the skips paint something else
        assert (net(x) - (torch.tanh(net.decoder[2](y + first) / 10) + 1) / 2).abs().max() > 1e-3


def test_block_is_left_out_of_the_plain_networks_record():
    """Files of Johnson's network (block=1, no skips) keep the architecture record they always had."""
    assert "block" not in TransformerConfig().to_dict() and "skips" not in TransformerConfig().to_dict()
    assert TransformerConfig(block=2).to_dict()["block"] == 2 and TransformerConfig(skips=True).to_dict()["skips"] is True
    with pytest.raises(UserError, match="block"):
        TransformerNet(TransformerConfig(block=0))
