"""The regular weave: a fine periodic ripple laid over a whole output, like woven fabric.

A painting has fine texture too, so the measure is relative: the share of an image's spectral energy
(luma, mean removed, Hann-windowed) at periods of ``PERIODS`` pixels, divided by the same share in the
style image at the same scale. A weave is also *regular*: its energy sits in a few sharp peaks rather
than spread over the band, so the second number is the band's peakiness (its strongest 0.1% of
frequencies against the band's median), again relative to the style image's. Above 1: more fine
(or more periodic) energy than the painting has.
"""
from __future__ import annotations

import torch

PERIODS = (2.0, 6.0)  # pixels: the stroke scale of a ~4-px ripple
LUMA = (0.299, 0.587, 0.114)


def _spectrum(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(power, period in px) over the 2-D frequencies of a (1, 3, H, W) or (3, H, W) [0, 1] image."""
    x = image.float().reshape(-1, *image.shape[-2:]) if image.shape[-3] == 1 else image.float().reshape(3, *image.shape[-2:])
    luma = x[0] if len(x) == 1 else sum(w * c for w, c in zip(LUMA, x))
    h, w = luma.shape
    window = torch.hann_window(h, periodic=False)[:, None] * torch.hann_window(w, periodic=False)[None, :]
    power = torch.fft.rfft2((luma - luma.mean()) * window).abs().pow(2)
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    radius = (fy.pow(2) + fx.pow(2)).sqrt()
    period = torch.where(radius > 0, 1 / radius.clamp_min(1e-12), torch.inf)
    return power, period


def band_stats(image: torch.Tensor, periods: tuple[float, float] = PERIODS) -> tuple[float, float]:
    """(share of the energy at ``periods``, peakiness of that band) of one image."""
    power, period = _spectrum(image)
    band = (period >= periods[0]) & (period <= periods[1])
    total = power[torch.isfinite(period)].sum().clamp_min(1e-20)
    values = power[band]
    top = values.topk(max(1, values.numel() // 1000)).values.mean()
    return float(values.sum() / total), float(top / values.median().clamp_min(1e-20))


class WeaveMeter:
    """The weave of outputs relative to one style image (taken at the outputs' scale by the caller)."""

    def __init__(self, style_image: torch.Tensor):
        self.style_share, self.style_peaks = band_stats(style_image)

    def __call__(self, image: torch.Tensor) -> tuple[float, float]:
        """(energy ratio, peakiness ratio) of one stylized image against the style image."""
        share, peaks = band_stats(image)
        return share / max(self.style_share, 1e-20), peaks / max(self.style_peaks, 1e-20)
