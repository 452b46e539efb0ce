"""Temporal stability: a training loss against flicker, and a flicker measure on clips with known motion.

Gupta, Johnson, Alahi, Fei-Fei ("Characterizing and Improving Stability in Neural Style Transfer",
ICCV 2017) train with a stability loss between the stylizations of an image and of a slightly
perturbed copy, so video needs no optical flow at run time. Noise alone is not enough for our
network: its two stride-2 convolutions see a shift by 1-3 pixels as a different image (a 2-px pan
flickered 24/255 against 0.04/255 in the input), so the perturbation here is a sub-stride shift plus
sensor-like noise, and the loss compares the stylization of the shifted crop with the same crop of
the stylization: stylize(shift(x)) against shift(stylize(x)).

The measure makes a clip from a still photo by panning a window a known whole number of pixels per
frame (not multiples of the stride) and adding fresh noise to every frame, so stylized frame t can be
shifted exactly onto frame t+1; flicker is the mean absolute difference of the overlapping pixels,
in 0-255 units.
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


def pan_clip(photo: torch.Tensor, frames: int = 8, step: tuple[int, int] = (1, 2), size: tuple[int, int] | None = None,
             noise: float = 2 / 255, seed: int = 0) -> torch.Tensor:
    """(frames, 3, h, w) windows of a (3, H, W) photo, moving ``step`` = (dy, dx) pixels per frame, with fresh
    Gaussian noise (std ``noise``) on every frame. ``size``: the window, default the photo less the travel."""
    _, height, width = photo.shape
    dy, dx = step
    h, w = size or (height - dy * (frames - 1), width - dx * (frames - 1))
    if h <= 0 or w <= 0 or h + dy * (frames - 1) > height or w + dx * (frames - 1) > width:
        raise ValueError(f"a {frames}-frame pan by {step} px does not fit a {width}x{height} photo")
    clip = torch.stack([photo[:, t * dy:t * dy + h, t * dx:t * dx + w] for t in range(frames)])
    if noise > 0:
        generator = torch.Generator().manual_seed(seed)
        clip = (clip + noise * torch.randn(clip.shape, generator=generator)).clamp(0, 1)
    return clip


def warped_difference(frames: torch.Tensor, step: tuple[int, int] = (1, 2)) -> float:
    """Mean |frame t+1 - frame t moved by ``step``| over the overlap, 0-255 units: 0 for a perfectly stable clip."""
    dy, dx = step
    h, w = frames.shape[-2:]
    later = frames[1:, :, : h - dy, : w - dx]
    earlier = frames[:-1, :, dy:, dx:]
    return float((later.float() - earlier.float()).abs().mean() * 255)


def consecutive_difference(frames: torch.Tensor) -> float:
    """Mean |frame t+1 - frame t|, 0-255 units: flicker of a real video, where the motion is unknown."""
    return float((frames[1:].float() - frames[:-1].float()).abs().mean() * 255)
