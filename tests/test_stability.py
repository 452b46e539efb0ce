"""Temporal stability: the loss has a gradient, the flicker measure reads 0 on a still clip and grows with noise."""
import torch

from fststyle.measures.flicker import consecutive_difference, pan_clip, warped_difference
from fststyle.nets.stability import stability_loss
from fststyle.nets.transformer import TransformerConfig, TransformerNet


def test_stability_loss_has_a_gradient_and_is_zero_for_a_shift_equivariant_net():
    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(base_channels=8, residual_blocks=1))
    content = torch.rand(2, 3, 32, 32)
    loss = stability_loss(net, content, net(content), noise=0.02, max_shift=3)
    loss.backward()
    assert loss.item() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    identity = lambda x: x  # noqa: E731 - a pixelwise map commutes with every shift
    assert stability_loss(identity, content, content, noise=0.0, max_shift=3).item() == 0


def test_pan_clip_moves_by_the_known_step():
    photo = torch.rand(3, 40, 50)
    clip = pan_clip(photo, frames=5, step=(1, 2), noise=0)
    assert clip.shape == (5, 3, 36, 42)
    assert torch.equal(clip[3], photo[:, 3:39, 6:48])


def test_flicker_is_zero_for_a_still_clip_and_grows_with_noise():
    photo = torch.rand(3, 40, 50)
    for step in [(0, 0), (1, 2), (3, 1)]:
        assert warped_difference(pan_clip(photo, 6, step, noise=0), step) == 0  # through the identity
    flicker = [warped_difference(pan_clip(photo, 6, (1, 2), noise=n), (1, 2)) for n in (0.0, 1 / 255, 4 / 255, 16 / 255)]
    assert flicker[0] == 0 and flicker[1] < flicker[2] < flicker[3]
    # a still clip through a network that ignores the motion: the measure sees the misalignment
    assert warped_difference(pan_clip(photo, 6, (0, 0), noise=0), (1, 2)) > 10


def test_consecutive_difference_of_a_real_style_of_flicker():
    frames = torch.zeros(4, 3, 8, 8)
    assert consecutive_difference(frames) == 0
    frames[1::2] = 2 / 255
    assert abs(consecutive_difference(frames) - 2) < 1e-4
