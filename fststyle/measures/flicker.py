"""Flicker of a stylized clip: frames made from a still photo by panning a window a known whole number of
pixels per frame (not multiples of the network's stride of 4) with fresh noise on every frame, so stylized
frame t can be shifted exactly onto frame t+1; flicker is the mean absolute difference of the overlapping
pixels, in 0-255 units. A real video (motion unknown) gets the plain frame-to-frame difference.
"""
from __future__ import annotations

import torch


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
