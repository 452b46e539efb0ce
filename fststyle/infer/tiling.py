"""Stylize images of any size in pieces, with instance-norm statistics of the whole image.

Instance norm normalises every channel by its mean and variance over the picture, so a piece
normalised by its own statistics comes out brighter, darker or differently textured than its
neighbour, and the seams show. Here every piece uses the statistics of the whole image instead.

Johnson's network (the zoo's, full and lite) goes through :mod:`fststyle.infer.bands`: full-width row
bands, exact, each layer computed once except two (4K in fp32 on 2 CPU cores within 2 GB;
docs/BENCHMARKS.md). Other networks (U-Net skips, transposed up-sampling) go in overlapping tiles here:

1. ``stats="exact"`` (default): passes over the tiles, one per instance-norm layer. Pass k runs
   every tile only up to norm layer k (earlier layers already normalised with their whole-image
   statistics) and adds up per-channel sums over the pixels the tile owns, so the statistics are
   those of the untiled network, up to tile-edge effects that the overlap keeps away.
   ``stats="downscaled"`` (any network): one pass over a copy of the image downscaled to the tile
   size (cheap, but downscaling changes the statistics: visibly different output, no seams).
2. the final pass writes the tiles, normalised with those statistics, blended with linear ramps
   where they overlap so that no tile edge (where reflection padding replaces real context)
   is ever visible.

Tile origins are multiples of 4 so the stride-2 convolutions sample the same grid as on the
whole image: in the middle of a tile the result is then exactly the untiled one.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from fststyle.infer import bands
from fststyle.infer.bands import ALIGN
from fststyle.nets.transformer import TransformerNet, to_image


class _StopForward(Exception):
    """Raised by the norm hook of the layer being measured: nothing after it is needed."""


class WholeImageNorm:
    """Forward hooks on every ``InstanceNorm2d``: record statistics, or normalise with given ones."""

    def __init__(self, net: nn.Module):
        self.norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
        self.stats: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # (mean, var) per layer, shape (N, C)
        self._sums: list[list[torch.Tensor]] | None = None
        self._region: tuple[int, int, int, int, int, int] | None = None  # y0, y1, x0, x1 owned; tile h, w
        self.measure: int | None = None  # exact mode: the layer being measured (later layers never run)

    @contextmanager
    def hooked(self) -> Iterator["WholeImageNorm"]:
        handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.norms)]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def _hook(self, index: int):
        def hook(module: nn.InstanceNorm2d, inputs: tuple[torch.Tensor], output: torch.Tensor):
            x = inputs[0]
            if self._sums is not None and self.measure in (None, index):
                self._accumulate(index, x)
                if self.measure == index:
                    raise _StopForward
            if self.stats is None:
                return None  # plain instance norm (the downscaled pass)
            scale, shift = bands.norm_affine(module, *(s.to(x.dtype) for s in self.stats[index]))
            return torch.addcmul(shift[:, :, None, None], x, scale[:, :, None, None])  # one full-size tensor: tiles are about memory

        return hook

    def _accumulate(self, index: int, x: torch.Tensor) -> None:
        y0, y1, x0, x1, th, tw = self._region
        f = x.shape[-2] / th  # 1/4 ... 4: this layer's resolution relative to the tile's
        core = x[:, :, round(y0 * f): round(y1 * f), round(x0 * f): round(x1 * f)].float()
        sums = self._sums[index]
        sums[0] += core.sum((-2, -1))
        sums[1] += core.square().sum((-2, -1))
        sums[2] += core.shape[-2] * core.shape[-1]

    def start_recording(self) -> None:
        self._sums = [[0.0, 0.0, 0] for _ in self.norms]

    def finish_recording(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        stats = []
        for s, s2, n in self._sums:
            if not n:
                stats.append(None)
                continue
            mean = s / n
            stats.append((mean, (s2 / n - mean.square()).clamp_min(0)))
        self._sums = None
        return stats

    def record_whole(self, net: nn.Module, image: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Statistics of ``image`` as a whole (it must fit in memory)."""
        self.stats = None
        self.start_recording()
        self._region = (0, image.shape[-2], 0, image.shape[-1], image.shape[-2], image.shape[-1])
        net(image)
        return self.finish_recording()


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Origins (multiples of ALIGN) of tiles of size ``tile`` covering ``length`` with at least ``overlap``."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    last = length - tile
    starts = sorted({min(last, round(i * last / (count - 1) / ALIGN) * ALIGN) for i in range(count)})
    return starts


def ramp(length: int, overlap_before: int, overlap_after: int) -> torch.Tensor:
    """Blend weights along one axis: rising over the overlap with the previous tile, falling into the next."""
    w = torch.ones(length)
    if overlap_before:
        w[:overlap_before] = torch.linspace(0, 1, overlap_before + 2)[1:-1]
    if overlap_after:
        w[length - overlap_after:] = torch.linspace(1, 0, overlap_after + 2)[1:-1]
    return w


def downscaled(image: torch.Tensor, long_side: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    scale = min(1.0, long_side / max(h, w))
    size = (max(ALIGN, round(h * scale / ALIGN) * ALIGN), max(ALIGN, round(w * scale / ALIGN) * ALIGN))
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)


def stylize_tiled(net: nn.Module, image: torch.Tensor, tile: int = 1024, overlap: int = 128, stats: str = "exact") -> torch.Tensor:
    """``net(image)`` for an (N, 3, H, W) image with H, W multiples of 4 (8 on 2x2 blocks), computed ``tile`` pixels at a time.

    The output of the tiles stays on the CPU in float32 (a 4K image is 100 MB there; on the device it
    would be the memory we are trying to save). Exact statistics for Johnson's network: bands
    (:mod:`fststyle.infer.bands`) instead of tiles.
    """
    if stats not in ("exact", "downscaled"):
        raise ValueError(f"stats must be 'exact' or 'downscaled', got {stats!r}")
    if stats == "exact" and bands.supports(net):  # full-width bands, exact, no overlap (about a tile's pixels on a GPU)
        return bands.stylize_banded(net, image, None if image.device.type == "cpu" else tile * tile // image.shape[-1])
    block = net.config.block if isinstance(net, TransformerNet) else 1
    if block > 1:  # tiles of the space-to-depth image, on which the layers run as a plain network
        blocks = F.pixel_unshuffle(image, block)
        out = stylize_tiled(OnBlocks(net), blocks, tile // block, overlap // block, stats)
        return F.pixel_shuffle(out, block)
    tile = max(ALIGN * 16, tile // ALIGN * ALIGN)  # smaller tiles would be mostly overlap
    overlap = min(overlap // ALIGN * ALIGN, tile // 2)
    return run_tiles(net, image, tile, overlap, stats)


class OnBlocks(nn.Module):
    """A ``block > 1`` network as a plain one on its space-to-depth input: the same layers, no shuffles."""

    def __init__(self, net: TransformerNet):
        super().__init__()
        self.encoder, self.residuals, self.decoder, self.skips = net.encoder, net.residuals, net.decoder, net.skips
        self.net = [net]  # in a list: not a submodule, so each norm layer is found once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_image(self.net[0].on_blocks(x))


def run_tiles(
    net: nn.Module,
    image: torch.Tensor,
    tile: int,
    overlap: int,
    stats: str,
) -> torch.Tensor:
    """``net(image)`` tile by tile, with whole-image norm statistics; the output on the CPU in float32.

    Tiles are blended with linear ramps where they overlap.
    """
    n, _, h, w = image.shape
    device = next(net.parameters()).device
    norm = WholeImageNorm(net)
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)

    def tiles():
        for i, y in enumerate(ys):
            for j, x in enumerate(xs):
                th, tw = min(tile, h), min(tile, w)
                # the part this tile owns when counting statistics: up to the middle of each overlap
                oy0 = 0 if i == 0 else (ys[i - 1] + th + y) // 2 - y
                oy1 = th if i == len(ys) - 1 else (y + th + ys[i + 1]) // 2 - y
                ox0 = 0 if j == 0 else (xs[j - 1] + tw + x) // 2 - x
                ox1 = tw if j == len(xs) - 1 else (x + tw + xs[j + 1]) // 2 - x
                own = (oy0 // ALIGN * ALIGN, oy1 // ALIGN * ALIGN, ox0 // ALIGN * ALIGN, ox1 // ALIGN * ALIGN, th, tw)
                before = (ys[i - 1] + th - y if i else 0, xs[j - 1] + tw - x if j else 0)
                after = (y + th - ys[i + 1] if i < len(ys) - 1 else 0, x + tw - xs[j + 1] if j < len(xs) - 1 else 0)
                yield y, x, th, tw, own, before, after

    def run_tile(y, x, th, tw):
        return net(image[:, :, y:y + th, x:x + tw].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last))

    with norm.hooked():
        if stats == "downscaled":
            norm.stats = norm.record_whole(net, downscaled(image, tile).to(device))
        else:
            norm.stats = [None] * len(norm.norms)
            for k in range(len(norm.norms)):
                norm.measure = k
                norm.start_recording()
                for y, x, th, tw, own, _, _ in tiles():
                    norm._region = own
                    try:
                        run_tile(y, x, th, tw)
                    except _StopForward:
                        pass
                norm.stats[k] = norm.finish_recording()[k]
            norm.measure = None
        out = weight = None
        for y, x, th, tw, _, before, after in tiles():
            result = run_tile(y, x, th, tw).float().cpu()
            if out is None:
                out = torch.zeros(n, result.shape[1], h, w)
                weight = torch.zeros(1, 1, h, w)
            wgt = ramp(th, before[0], after[0])[:, None] * ramp(tw, before[1], after[1])[None, :]
            out[:, :, y:y + th, x:x + tw] += result * wgt
            weight[:, :, y:y + th, x:x + tw] += wgt
    return out.div_(weight)
