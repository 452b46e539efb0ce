"""The marks a model paints over a photo: how large they are, and how much of the picture they make.

What a model paints is the output's luma less the best affine fit of the photo's luma: a change of brightness and
contrast explains none of it, the strokes, dabs, tiles and outlines all of it. Its power's weighted geometric mean
period over ``PERIODS`` is the stroke period in pixels: a 4-px ripple reads near 4, a sky of 10-20-px dabs near
15, at the evaluator's 512 px. Its share of the output's luma variance says how much is painted: near 0 for a
filtered photo, near 1 where nothing of the photo's light and shade is left (docs/QUALITY.md, twenty-first round).
"""
from __future__ import annotations

import torch

from fststyle.measures.weave import luma, luma_spectrum

PERIODS = (2.0, 64.0)  # pixels: from the finest ripple to the broadest band a 512-px picture holds many of


def _luma(image: torch.Tensor) -> torch.Tensor:
    """(H, W) luma of one (1, 3, H, W) or (3, H, W) image."""
    return luma(image.reshape(1, -1, *image.shape[-2:]))[0]


def painted(output: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """(H, W) luma of the output that no brightness and contrast change of the photo's luma explains; both
    (1, 3, H, W) or (3, H, W) in [0, 1] at one size."""
    out, base = _luma(output), _luma(photo)
    fit = torch.stack([base.flatten(), torch.ones_like(base.flatten())], dim=1)
    coefficients = torch.linalg.lstsq(fit, out.flatten()[:, None]).solution
    return out - (fit @ coefficients).reshape(out.shape)


def stroke_period(output: torch.Tensor, photo: torch.Tensor, periods: tuple[float, float] = PERIODS) -> float:
    """Power-weighted geometric mean period (px) of what the output paints over the photo; NaN when it paints
    nothing (an output that is the photo, brighter or darker)."""
    marks = painted(output, photo)
    if marks.var() <= 1e-8 * _luma(output).var() + 1e-12:  # rounding, not marks
        return float("nan")
    power, period = luma_spectrum(marks[None, None])
    band = (period >= periods[0]) & (period <= periods[1])
    weights = power[0] * band
    log_period = period.clamp(max=periods[1]).log()  # the mean's infinite period is outside the band, weight 0
    return (weights * log_period).sum().div(weights.sum()).exp().item()


def painted_share(output: torch.Tensor, photo: torch.Tensor) -> float:
    """Share (0-1) of the output's luma variance that is painted, not the photo's light and shade re-toned."""
    variance = _luma(output).var()
    if variance <= 1e-12:
        return float("nan")  # a flat output: nothing to share out
    return (painted(output, photo).var() / variance).item()
