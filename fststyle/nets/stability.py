"""Temporal stability: a training loss against flicker (its measure is :mod:`fststyle.measures.flicker`).

Gupta, Johnson, Alahi, Fei-Fei ("Characterizing and Improving Stability in Neural Style Transfer",
ICCV 2017) train with a stability loss between the stylizations of an image and of a slightly
perturbed copy, so video needs no optical flow at run time. Noise alone is not enough for our
network: its two stride-2 convolutions see a shift by 1-3 pixels as a different
image (docs/QUALITY.md, video section), so the perturbation here is a sub-stride shift plus
sensor-like noise, and the loss compares the stylization of the shifted crop with the same crop of
the stylization: stylize(shift(x)) against shift(stylize(x)).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

STRIDE = 4  # the transformer's total down-sampling: shifts that are multiples of it are the easy case


def stability_loss(
    transformer: Callable[[torch.Tensor], torch.Tensor],
    content: torch.Tensor,
    output: torch.Tensor,
    noise: float = 0.02,
    max_shift: int = 3,
) -> torch.Tensor:
    """MSE between the stylization of a shifted, noisy crop of ``content`` and the same crop of ``output``.

    The crop drops ``STRIDE`` pixels per side so its size stays a multiple of the stride; its offset
    (dy, dx) in 0..max_shift is drawn per call. ``noise``: std of the added Gaussian noise, [0, 1] units.
    """
    h, w = content.shape[-2:]
    dy, dx = (int(v) for v in torch.randint(0, max_shift + 1, (2,)))
    ch, cw = h - STRIDE, w - STRIDE
    crop = content[..., dy:dy + ch, dx:dx + cw]
    if noise > 0:
        crop = (crop + noise * torch.randn_like(crop)).clamp(0, 1)
    shifted = transformer(crop)
    return F.mse_loss(shifted.float(), output[..., dy:dy + ch, dx:dx + cw].float())
