"""Johnson et al.'s image transformation network, with Ulyanov's instance norm.

c9s1-32, d64, d128, 5 x R128, u64, u32, c9s1-3 (widths and block count configurable).
Images are RGB in [0, 1] on both sides. The last conv is mapped to [0, 1] with
``(tanh(x / 10) + 1) / 2``: bounded, so the loss network never sees impossible pixels and the
exported net needs no clamp. The 1/10 keeps the first Adam steps (every weight moves by ~lr)
from swinging the output into saturation: without it the style loss jumps ~14x on step 1 and
takes hundreds of steps to recover; with it, it falls from the first step (measured, 128 px
starry_night, 30 steps: style loss 10.1e6 vs 2.1e6 at the end).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
import torch.nn.functional as F

from fststyle.errors import UserError


@dataclass(frozen=True)
class TransformerConfig:
    base_channels: int = 32          # c9s1-32; d64/d128 double it
    residual_blocks: int = 5
    upsample: str = "nearest"       # "nearest" (resize + conv, no checkerboard) or "transpose"

    def to_dict(self) -> dict:
        return asdict(self)


class ConvLayer(nn.Sequential):
    """Reflection pad, conv, optional instance norm and ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = True, relu: bool = True):
        layers: list[nn.Module] = [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
        if norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(ConvLayer(channels, channels, 3), ConvLayer(channels, channels, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsample(nn.Module):
    """x2 up-sampling: nearest resize + conv (default) or a fractionally strided conv."""

    def __init__(self, cin: int, cout: int, mode: str):
        super().__init__()
        if mode not in ("nearest", "transpose"):
            raise UserError(f"model.upsample must be 'nearest' or 'transpose', got {mode!r}")
        self.mode = mode
        if mode == "nearest":
            self.conv = ConvLayer(cin, cout, 3)
        else:
            self.conv = nn.Sequential(
                nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(cout, affine=True),
                nn.ReLU(inplace=True),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x)


class TransformerNet(nn.Module):
    def __init__(self, config: TransformerConfig | None = None):
        super().__init__()
        self.config = config = config or TransformerConfig()
        c = config.base_channels
        self.encoder = nn.Sequential(ConvLayer(3, c, 9), ConvLayer(c, 2 * c, 3, 2), ConvLayer(2 * c, 4 * c, 3, 2))
        self.residuals = nn.Sequential(*[ResidualBlock(4 * c) for _ in range(config.residual_blocks)])
        self.decoder = nn.Sequential(
            Upsample(4 * c, 2 * c, config.upsample),
            Upsample(2 * c, c, config.upsample),
            ConvLayer(c, 3, 9, norm=False, relu=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = self.decoder(self.residuals(self.encoder(x)))
        if y.shape[-2:] != (h, w):  # odd sizes: strided convs round down, up-sampling doubles
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        return to_image(y)


def to_image(y: torch.Tensor) -> torch.Tensor:
    """The last conv's output to [0, 1] pixels (module docstring: why tanh(y / 10))."""
    return (torch.tanh(y / 10.0) + 1) / 2  # a literal, so torch.jit.script compiles it
