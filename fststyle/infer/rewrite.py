"""Exact rewrites of a trained transformer that run faster at inference: same function, other kernels.

Two layers of Johnson et al.'s network run far below the CPU's convolution speed (measured with
OpenVINO's per-layer counters at 1024x680, bench/infer_speed.py --layers):

- each up-sampling layer convolves a 2x nearest-resized copy, so 3 of every 4 multiplications
  repeat one already made. Resize + reflect-pad + 3x3 conv equals a 2x2 conv on the small
  input with 4x the output channels, one per output phase, followed by depth-to-space
  (``SubPixelUpsample``): 2.25x fewer multiplications, no resized copy.
- the last 9x9 conv has 3 output channels, too few to fill a vector unit (it ran at a fifth of
  the speed of the others). On 4x4 space-to-depth blocks it becomes a 3x3 conv with 48 outputs
  (``SpaceToDepthConv``): 1.8x more multiplications, but dense ones.

Both are algebra on the trained weights, checked against the original in tests/test_rewrite.py.
Training keeps the plain weights; its up-sampling runs the first rewrite's arithmetic on them
(nets/transformer.nearest_upsample_conv), with gradients through it.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from fststyle.nets.transformer import ConvLayer, TransformerNet, Upsample, subpixel_kernels


class SubPixelUpsample(nn.Module):
    """``Upsample(mode="nearest")`` computed on the small image: replicate-pad 1, 2x2 conv, depth-to-space, crop 1.

    Output rows 2i - 1 and 2i both read source rows i - 1 and i (padded: i and i + 1), so one
    2x2 window serves both, with the phase-1 and phase-0 kernels; the same holds for columns.
    """

    def __init__(self, layer: Upsample):
        super().__init__()
        conv: nn.Conv2d = layer.conv[1]
        cout, cin = conv.out_channels, conv.in_channels
        self.conv = nn.Conv2d(cin, 4 * cout, 2)
        self.conv.weight.data.copy_(subpixel_kernels(conv.weight.detach()))
        self.conv.bias.data.copy_(conv.bias.detach().repeat_interleave(4))
        self.post = nn.Sequential(*list(layer.conv)[2:])  # the same instance norm and ReLU modules

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """The up-sampled convolution, before the norm and ReLU (``post``)."""
        y = F.pixel_shuffle(self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate")), 2)  # (N, C, 2h + 2, 2w + 2)
        return y[:, :, 1:-1, 1:-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.body(x))


class SpaceToDepthConv(nn.Module):
    """A stride-1 ``ConvLayer`` (reflect pad + conv) computed on 4x4 pixel blocks: a 3x3 conv with 16x the channels.

    Needs H and W divisible by 4, which the decoder's output always is.
    """

    def __init__(self, layer: ConvLayer, block: int = 4):
        super().__init__()
        pad, conv = layer[0], layer[1]
        self.block = r = block
        k, cout, cin = conv.kernel_size[0], conv.out_channels, conv.in_channels
        taps = (r - 1 + k - 1) // r + 1  # input blocks one output block reads, per axis: 3 for k = 9
        weight = torch.zeros(cout, r, r, cin, r, r, taps, taps, dtype=conv.weight.dtype)
        w = conv.weight.detach()
        for a in range(r):  # output pixel (a, b) in its block reads input pixel a + u = r * ky + p
            for b in range(r):
                for u in range(k):
                    for v in range(k):
                        ky, p = divmod(a + u, r)
                        kx, q = divmod(b + v, r)
                        weight[:, a, b, :, p, q, ky, kx] = w[:, :, u, v]
        self.pad = pad
        self.conv = nn.Conv2d(cin * r * r, cout * r * r, taps)
        self.conv.weight.data.copy_(weight.reshape(cout * r * r, cin * r * r, taps, taps))
        self.conv.bias.data.copy_(conv.bias.detach().repeat_interleave(r * r))
        self.post = nn.Sequential(*list(layer)[2:])
        self.extra = (taps - 1) * r - (k - 1)  # pixels the last blocks read past the padded image: 0 for k = 9

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pad(x)  # (H + k - 1, W + k - 1)
        if self.extra:
            x = F.pad(x, (0, self.extra, 0, self.extra))  # to whole blocks; these zeros meet zero weights only
        y = self.conv(F.pixel_unshuffle(x, self.block))
        return self.post(F.pixel_shuffle(y, self.block))


def faster_equivalent(net: TransformerNet) -> TransformerNet:
    """A copy of ``net`` with the rewrites above (same outputs up to float rounding)."""
    net = copy.deepcopy(net)
    decoder = net.decoder
    for i, layer in enumerate(decoder):
        if isinstance(layer, Upsample) and layer.mode == "nearest":
            decoder[i] = SubPixelUpsample(layer)
    last = decoder[-1]
    if isinstance(last, ConvLayer) and last[1].kernel_size[0] > 3 and last[1].stride == (1, 1):
        decoder[-1] = SpaceToDepthConv(last)
    return net
