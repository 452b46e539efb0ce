"""Stylize a large image in full-width row bands, with the instance-norm statistics of the whole image, exactly.

A 4K picture's full-resolution activations are 1 GB per 32-channel tensor in fp32, so one pass of the network
does not fit a small memory. Here no full-resolution activation is ever held whole:

- every layer is computed a band of rows at a time, from just the input rows its kernel reads (a band's halo is
  the neighbouring rows themselves, not padding), so each band is exactly the rows of the untiled result;
- the half- and quarter-resolution activations are kept whole (0.53 and 0.27 GB at 4K in fp32), normalised in
  place once their layer is complete;
- the two full-resolution layers before a norm (the first convolution, the last up-sampling) run twice: once
  to add up their statistics, once to go on. That is the only repeated work: an eighth of the multiplications.

No blending and no overlap: the result equals the untiled network's up to float summation order. Networks this
does not cover (U-Net skips, transposed up-sampling) go through :mod:`fststyle.infer.tiling`.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from fststyle.infer.rewrite import SpaceToDepthConv, SubPixelUpsample
from fststyle.nets.transformer import ConvLayer, TransformerNet, Upsample, to_image

Rows = Callable[[int, int], torch.Tensor]  # rows a:b of an activation, (N, C, b - a, W)
BAND_BYTES = 24 * 2**20
ALIGN = 4  # the network down-samples twice by 2; band edges on that grid start each stride-2 layer on an even row


def supports(net: nn.Module) -> bool:
    """Whether ``net`` is a network this module streams (Johnson's layout, resize up-sampling, no skips)."""
    if not isinstance(net, TransformerNet) or net.skips or net.config.styles > 1:  # one style: TransformerNet.single
        return False
    return all(not isinstance(m, Upsample) or m.mode != "transpose" for m in net.decoder)


def band_rows(net: TransformerNet, image: torch.Tensor) -> int:
    """Rows per band on the CPU: as many as keep a band's largest tensor (the full-resolution activation with the
    last layer's halo) within ``BAND_BYTES``. glibc maps each allocation above its largest mmap threshold (32 MB)
    afresh and faults in every page again; below it, the heap reuses one band's memory for the next."""
    n, _, _, width = image.shape
    halo = net.config.end_kernel - 1
    per_row = n * net.config.base_channels * (width + halo) * image.element_size()
    return max(ALIGN, BAND_BYTES // per_row - halo)


def stylize_banded(net: TransformerNet, image: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """``net(image)`` for an (N, 3, H, W) image with H, W multiples of the network's stride, ``rows`` output rows at
    a time (default: ``band_rows``)."""
    rows = rows or band_rows(net, image)
    if net.block > 1:  # the same layers on the space-to-depth image
        out = _stream(net, F.pixel_unshuffle(image, net.block), max(ALIGN, rows // net.block))
        return F.pixel_shuffle(out, net.block)
    return _stream(net, image, rows)


def _stream(net: TransformerNet, image: torch.Tensor, rows: int) -> torch.Tensor:
    """The layers in order; at most three quarter-resolution tensors (in a residual block), or a half- and a
    quarter-resolution one, are whole at a time."""
    rows = max(ALIGN, rows // ALIGN * ALIGN)
    height = image.shape[-2]
    first, second, third = net.encoder
    full = _layer_rows(first, _whole(image), height)
    full = _normalised(full, first, _statistics(full, height, rows))
    half = _complete(second, full, height, height // 2, rows // 2)
    quarter = _complete(third, _whole(half), height // 2, height // 4, rows // 4)
    del half
    for block in net.residuals:
        inner, outer = block.body
        y = _complete(inner, _whole(quarter), height // 4, height // 4, rows // 4)
        quarter = _complete(outer, _whole(y), height // 4, height // 4, rows // 4).add_(quarter)
        del y
    up1, up2, last = net.decoder
    half = _complete(up1, _whole(quarter), height // 4, height // 2, rows // 2)
    del quarter
    full = _layer_rows(up2, _whole(half), height // 2)
    full = _normalised(full, up2, _statistics(full, height, rows))
    return _fill(_then(_layer_rows(last, full, height), to_image), height, rows)


def _complete(layer: nn.Module, source: Rows, in_height: int, out_height: int, band: int) -> torch.Tensor:
    """The layer's whole output, normalised (and ReLU'd) in place once every band is in."""
    moments = Moments()
    out = _fill(_layer_rows(layer, source, in_height), out_height, band, moments)
    return _apply(out, *_affine(layer, *moments.result(), out.dtype))


def _whole(x: torch.Tensor) -> Rows:
    return lambda a, b: x[:, :, a:b]


def _then(rows: Rows, fn) -> Rows:
    return lambda a, b: fn(rows(a, b))


def _padded(source: Rows, height: int, a: int, b: int, side: int, mode: str) -> torch.Tensor:
    """Rows a:b of ``source`` padded by ``side`` columns, rows outside 0:height filled by ``mode`` as the whole image's pad would."""
    lo, hi = max(a, 0), min(b, height)
    return F.pad(source(lo, hi), (side, side, lo - a, b - hi), mode=mode)


def _layer_rows(layer: nn.Module, source: Rows, height: int) -> Rows:
    """Rows of ``layer``'s output before its norm, computed from the rows of its input that ``source`` gives."""
    if isinstance(layer, SubPixelUpsample):  # output rows 2q0:2q1 read input rows q0 - 1 .. q1, replicate-padded

        def rows(a: int, b: int) -> torch.Tensor:
            q0, q1 = a // 2, (b + 1) // 2
            x = _padded(source, height, q0 - 1, q1 + 1, 1, "replicate")
            y = _shuffle(layer.conv(x), 2)[:, :, 1:-1, 1:-1]
            return y[:, :, a - 2 * q0: b - 2 * q0]

        return rows
    if isinstance(layer, Upsample):  # resize, then the ConvLayer on the resized rows
        if layer.mode == "nearest":  # the network as trained (rewrite=False): its exact faster form, in its dtype
            weight = layer.conv[1].weight
            return _layer_rows(SubPixelUpsample(layer).to(weight.device, weight.dtype), source, height)
        return _layer_rows(layer.conv, _resized_rows(source, height), 2 * height)
    if isinstance(layer, SpaceToDepthConv):
        pad = layer.pad.padding[0]

        def rows(a: int, b: int) -> torch.Tensor:
            x = _padded(source, height, a - pad, b + pad, pad, "reflect")
            if layer.extra:  # to whole blocks, as SpaceToDepthConv pads: zeros that meet zero weights
                x = F.pad(x, (0, layer.extra, 0, layer.extra))
            return _shuffle(layer.conv(_unshuffle(x, layer.block)), layer.block)

        return rows
    if not isinstance(layer, ConvLayer):
        raise TypeError(f"no band form for {type(layer).__name__}")
    pad, conv = layer[0].padding[0], layer[1]
    k, s = conv.kernel_size[0], conv.stride[0]
    return lambda a, b: conv(_padded(source, height, s * a - pad, s * (b - 1) - pad + k, pad, "reflect"))


def _shuffle(y: torch.Tensor, r: int) -> torch.Tensor:
    """``F.pixel_shuffle`` for a channels-last tensor, as one copy in that layout (several times faster on the CPU)."""
    n, c, h, w = y.shape
    z = y.permute(0, 2, 3, 1).reshape(n, h, w, c // r**2, r, r).permute(0, 1, 4, 2, 5, 3)
    return z.reshape(n, h * r, w * r, c // r**2).permute(0, 3, 1, 2)


def _unshuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """``F.pixel_unshuffle`` into a channels-last tensor, as one copy."""
    n, c, h, w = x.shape
    z = x.permute(0, 2, 3, 1).reshape(n, h // r, r, w // r, r, c).permute(0, 1, 3, 5, 2, 4)
    return z.reshape(n, h // r, w // r, c * r * r).permute(0, 3, 1, 2)


def _resized_rows(source: Rows, height: int) -> Rows:
    """Rows of the bilinear 2x resize (align_corners=False): each output row reads the two nearest input rows,
    clamped at the image's edges, as a replicated row does."""

    def rows(a: int, b: int) -> torch.Tensor:
        q0, q1 = a // 2 - 1, (b + 1) // 2 + 1
        x = _padded(source, height, q0, q1, 0, "replicate")
        y = F.interpolate(x, scale_factor=(2.0, 1.0), mode="bilinear", align_corners=False)
        y = y[:, :, a - 2 * q0: b - 2 * q0]
        return F.interpolate(y, scale_factor=(1.0, 2.0), mode="bilinear", align_corners=False)

    return rows


class Moments:
    """Per-channel mean and (biased) variance over bands of rows: each band's centred sums, merged into running
    float64 totals (Chan et al.). ``torch.var_mean`` over a channels-last band took several times as long; the
    totals are updated in place, because small tensors kept alive between the bands' large temporaries
    fragmented the heap (docs/BENCHMARKS.md, 2026-12-07)."""

    def __init__(self):
        self.count, self.mean, self.squares = 0, None, None

    def add(self, y: torch.Tensor) -> None:
        y = y.float()
        n = y.shape[-2] * y.shape[-1]
        mean = y.sum((-2, -1)) / n
        squares = (y - mean[:, :, None, None]).square_().sum((-2, -1)).double()
        mean = mean.double()
        if self.mean is None:
            self.count, self.mean, self.squares = n, mean, squares
            return
        total = self.count + n
        delta = mean - self.mean
        self.squares += squares + delta.square() * (self.count * n / total)
        self.mean += delta * (n / total)
        self.count = total

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean, self.squares / self.count


def _bands(rows: Rows, height: int, band: int) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(a, b, rows a:b) for every band of ``band`` rows, top to bottom."""
    for a in range(0, height, band):
        b = min(height, a + band)
        yield a, b, rows(a, b)


def _fill(rows: Rows, height: int, band: int, moments: Moments | None = None) -> torch.Tensor:
    """The whole activation, computed ``band`` rows at a time into one tensor (its moments added up on the way)."""
    out = None
    for a, b, y in _bands(rows, height, band):
        if out is None:
            out = torch.empty((y.shape[0], y.shape[1], height, y.shape[-1]), dtype=y.dtype, device=y.device, memory_format=torch.channels_last)
        out[:, :, a:b] = y
        if moments is not None:
            moments.add(y)
    return out


def _statistics(rows: Rows, height: int, band: int) -> tuple[torch.Tensor, torch.Tensor]:
    moments = Moments()
    for _, _, y in _bands(rows, height, band):
        moments.add(y)
    return moments.result()


def _norm_and_relu(layer: nn.Module) -> tuple[nn.Module, bool]:
    post = list(layer.post) if isinstance(layer, SubPixelUpsample) else list(layer.conv if isinstance(layer, Upsample) else layer)
    norm = next(m for m in post if isinstance(m, nn.InstanceNorm2d))
    return norm, any(isinstance(m, nn.ReLU) for m in post)


def norm_affine(norm: nn.InstanceNorm2d, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance norm with the given (N, C) statistics as ``x * scale + shift``, (N, C) each, in the statistics' dtype."""
    scale = torch.rsqrt(var + norm.eps)
    shift = -mean * scale
    if norm.affine:
        weight, bias = norm.weight.to(mean.dtype), norm.bias.to(mean.dtype)
        scale, shift = scale * weight, shift * weight + bias
    return scale, shift


def _affine(layer: nn.Module, mean: torch.Tensor, var: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The layer's norm as y = x * scale + shift (per image and channel, in ``dtype``), and whether a ReLU follows."""
    norm, relu = _norm_and_relu(layer)
    scale, shift = norm_affine(norm, mean, var)
    return scale.to(dtype)[:, :, None, None], shift.to(dtype)[:, :, None, None], relu


def _apply(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, relu: bool) -> torch.Tensor:
    torch.addcmul(shift, x, scale, out=x)
    return x.relu_() if relu else x


def _normalised(rows: Rows, layer: nn.Module, stats: tuple[torch.Tensor, torch.Tensor]) -> Rows:
    """Rows of ``layer``'s output, normalised (and ReLU'd) with the whole image's statistics ``stats``."""
    scale, shift, relu = _affine(layer, *stats, next(layer.parameters()).dtype)
    return lambda a, b: _apply(rows(a, b), scale, shift, relu)
