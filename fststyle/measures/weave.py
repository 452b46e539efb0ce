"""The regular weave: a fine periodic ripple laid over a whole output, like woven fabric.

A painting has fine texture too, so the measure is relative: the share of an image's spectral energy
(luma, mean removed, Hann-windowed) at periods of ``PERIODS`` pixels, divided by the same share in the
style image at the same scale. A weave is also *regular*: its energy sits in a few sharp peaks rather
than spread over the band, so the second number is the band's peakiness (its strongest 0.1% of
frequencies against the band's median), again relative to the style image's. Above 1: more fine
(or more periodic) energy than the painting has.

The peakiness also rises when an output paints the photo's own periodic structure (a skyline's window
columns) harder, or smooths the rest of the band. ``grid_lines`` looks only where a pattern locked to the
network's stride puts its energy: the spectral lines at multiples of 1/stride cycles/px, each against the
ring of frequencies around it, where a photo or a painted texture spreads its energy smoothly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PERIODS = (2.0, 6.0)  # pixels: the stroke scale of a ~4-px ripple
LUMA = (0.299, 0.587, 0.114)


def luma(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W) luma of (N, 3, H, W) images; (N, 1, H, W) grey ones as they are."""
    x = images.float()
    return x[:, 0] if x.shape[1] == 1 else sum(w * x[:, i] for i, w in enumerate(LUMA))


def luma_spectrum(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(power (N, H, W // 2 + 1), period in px (H, W // 2 + 1)) of the luma of (N, 3, H, W) [0, 1] images (or of
    (N, 1, H, W) grey ones), mean removed, Hann-windowed. Differentiable: ``loss.ripple_weight`` trains through it."""
    x = images.float()
    grey = luma(x)
    h, w = grey.shape[-2:]
    window = torch.hann_window(h, periodic=False, device=x.device)[:, None] * torch.hann_window(w, periodic=False, device=x.device)
    power = torch.fft.rfft2((grey - grey.mean(dim=(-2, -1), keepdim=True)) * window).abs().pow(2)
    fy = torch.fft.fftfreq(h, device=x.device)[:, None]
    fx = torch.fft.rfftfreq(w, device=x.device)[None, :]
    radius = (fy.pow(2) + fx.pow(2)).sqrt()
    period = torch.where(radius > 0, 1 / radius.clamp_min(1e-12), torch.inf)
    return power, period


def _spectrum(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(power, period in px) over the 2-D frequencies of a (1, 3, H, W) or (3, H, W) [0, 1] image."""
    power, period = luma_spectrum(image.reshape(1, -1, *image.shape[-2:]))
    return power[0], period


def band_stats(image: torch.Tensor, periods: tuple[float, float] = PERIODS) -> tuple[float, float]:
    """(share of the energy at ``periods``, peakiness of that band) of one image."""
    power, period = _spectrum(image)
    band = (period >= periods[0]) & (period <= periods[1])
    total = power[torch.isfinite(period)].sum().clamp_min(1e-20)
    values = power[band]
    top = values.topk(max(1, values.numel() // 1000)).values.mean()
    return float(values.sum() / total), float(top / values.median().clamp_min(1e-20))


def ripple_share(output: torch.Tensor, photo: torch.Tensor, peak: float = 100.0, margin: float = 2.0) -> torch.Tensor:
    """Share of each output's fine band (``PERIODS``) that sits in sharp spectral peaks the photo does not have.

    A regular ripple off the network's grid (the_scream's combed lines, ~3 px apart) puts its energy in a few
    frequencies, wherever the picture lets it; brush texture and the photo's edges spread theirs over the band. A
    frequency counts above ``peak`` x the band's median power, or above ``margin`` x the photo's own power there
    (scaled by the two medians), whichever is higher: a skyline's window columns may be painted, harder even.
    The thresholds and the band's total are held fixed, so the gradient only lowers the peaks (it cannot win by
    raising the rest of the band). A training term (``loss.ripple_weight``), and the evaluator's ``ripple`` column.
    ``output`` and ``photo``: (N, 3, H, W) in [0, 1]; the mean over the batch."""
    out_power, period = luma_spectrum(output)
    photo_power = luma_spectrum(photo)[0]
    band = (period >= PERIODS[0]) & (period <= PERIODS[1])
    out_band, photo_band = out_power[:, band], photo_power[:, band]
    with torch.no_grad():
        out_level = out_band.median(dim=1, keepdim=True).values
        photo_level = photo_band.median(dim=1, keepdim=True).values.clamp_min(1e-20)
        threshold = out_level * (margin * photo_band / photo_level).clamp_min(peak)
        total = out_band.sum(dim=1).clamp_min(1e-20)
    return ((out_band - threshold).clamp_min(0).sum(dim=1) / total).mean()


def _neighbourhood(power: torch.Tensor) -> torch.Tensor:
    """(N, H, W) power averaged over each frequency's 3x3 neighbours."""
    return F.avg_pool2d(power[:, None], 3, stride=1, padding=1, count_include_pad=False)[:, 0]


def spectrum_gap(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """How far each output's fine-band (``PERIODS``) luma power lies from its target's (a teacher's output of the same
    photo), both averaged over 3x3 neighbouring frequencies: the summed absolute difference, as a share of the
    target's band energy (0 = the same spectrum).

    Pixel distillation hardly sees the fine band (its amplitudes are small), so a lite twin can carry a ripple its
    teacher does not (an excess in a few frequencies), or lose the teacher's fine brush texture (a deficit over the
    band), at almost no cost in MSE; this weighs both by the energy they move. A training term
    (``loss.spectrum_weight``, with ``teacher=``); (N, 3, H, W) in [0, 1]; the mean over the batch."""
    out_power, period = luma_spectrum(output)
    with torch.no_grad():
        target_power = luma_spectrum(target)[0]
    band = (period >= PERIODS[0]) & (period <= PERIODS[1])
    out_band, target_band = _neighbourhood(out_power)[:, band], _neighbourhood(target_power)[:, band]
    return ((out_band - target_band).abs().sum(dim=1) / target_band.sum(dim=1).clamp_min(1e-20)).mean()


class WeaveMeter:
    """The weave of outputs relative to one style image (taken at the outputs' scale by the caller)."""

    def __init__(self, style_image: torch.Tensor):
        self.style_share, self.style_peaks = band_stats(style_image)

    def __call__(self, image: torch.Tensor) -> tuple[float, float]:
        """(energy ratio, peakiness ratio) of one stylized image against the style image."""
        share, peaks = band_stats(image)
        return share / max(self.style_share, 1e-20), peaks / max(self.style_peaks, 1e-20)


GRID_LINE = 1 / 64  # cycles/px: a line's disc (a pattern locked to the grid but bent by the picture stays in it)
GRID_RING = (3 / 64, 5 / 64)  # the ring around it that gives the local level


def grid_lines(image: torch.Tensor, stride: int = 4) -> list[float]:
    """Energy above the local level on each spectral line of a ``stride``-px grid (the mean left out), as a share
    of the image's energy at ``PERIODS``: luma of a [0, 1] (3, H, W) image."""
    power, period = _spectrum(image)
    h, w = image.shape[-2:]
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    band = power[(period >= PERIODS[0]) & (period <= PERIODS[1])].sum().clamp_min(1e-20)
    shares = []
    for a in range(stride):
        for b in range(stride // 2 + 1):
            if a == b == 0 or (b in (0, stride / 2) and a > stride / 2):  # the mean, and mirror images of lines
                continue
            dy = (fy - a / stride + 0.5) % 1 - 0.5
            distance = (dy.pow(2) + (fx - b / stride).pow(2)).sqrt()
            line, ring = power[distance < GRID_LINE], power[(distance >= GRID_RING[0]) & (distance < GRID_RING[1])]
            if line.numel() == 0 or ring.numel() == 0:  # too small an image to resolve the line
                shares.append(0.0)
                continue
            shares.append(float((line - ring.mean()).clamp_min(0).sum() / band))
    return shares


def grid_added(output: torch.Tensor, photo_lines: list[float], stride: int = 4) -> float:
    """Percent of the output's fine band that sits on the grid's lines beyond what the photo has there
    (``photo_lines``: ``grid_lines`` of the photo, computed once for all its outputs): 0 = nothing locked to the
    network's stride (a photo's own periodic structure, a skyline's windows, is not counted)."""
    return 100 * sum(max(0.0, o - p) for o, p in zip(grid_lines(output, stride), photo_lines))
