"""Stylize images with an exported style file (or a training checkpoint), in PyTorch.

``Stylizer.from_checkpoint(path)(pil_image) -> pil_image``; also takes (N, 3, H, W) tensors in
[0, 1] and returns the same. Fast by default: the network rewritten into an exactly equivalent,
faster form (:mod:`fststyle.infer.rewrite`), ``inference_mode``, channels_last memory layout (oneDNN's
fast convolution path on CPUs), optional bf16/fp16, tiling for large images.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fststyle.errors import UserError
from fststyle.hardware import PRECISION_TABLE, check_precision, resolve_device, torch_dtype
from fststyle.infer import MIN_SIZE
from fststyle.infer.color import finish
from fststyle.infer.rewrite import faster_equivalent
from fststyle.infer.tiling import ALIGN, stylize_tiled
from fststyle.nets.transformer import TransformerNet
from fststyle.stylefile import StyleMeta, load_transformer


class AlignedTransformer(nn.Module):
    """The transformer on any H, W: reflection-pad to a multiple of its stride (4, or 8 on 2x2 blocks), stylize, crop.

    The two stride-2 convolutions then see a whole pixel grid, so the plain network, the tiled
    path and the exported ONNX graph (where this padding is traced with dynamic shapes) all
    compute the same thing.
    """

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.transformer = transformer
        self.align = alignment(transformer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        x = F.pad(x, (0, (-w) % self.align, 0, (-h) % self.align), mode="reflect")
        return self.transformer(x)[:, :, :h, :w]


def alignment(transformer: nn.Module) -> int:
    """The multiple of pixels an image side needs for the network's grid: its stride."""
    return transformer.config.stride if isinstance(transformer, TransformerNet) else ALIGN


class Stylizer:
    """A trained transformer ready for inference, with the post-effects of :mod:`fststyle.infer.color`.

    ``tile``: images whose height or width exceeds it are processed in overlapping tiles of that
    size with whole-image normalisation statistics (:mod:`fststyle.infer.tiling`); ``None`` never tiles.
    ``rewrite=False`` keeps the network as trained (the benchmark's comparison).
    """

    def __init__(
        self,
        transformer: nn.Module,
        metadata: StyleMeta | None = None,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        tile: int | None = None,
        overlap: int = 128,
        tile_stats: str = "exact",
        preserve_color: bool = False,
        strength: float = 1.0,
        rewrite: bool = True,
    ):
        check_precision(precision, PRECISION_TABLE)
        if not 0 <= strength <= 1:
            raise UserError(f"strength must be between 0 and 1, got {strength}")
        self.device = resolve_device(str(device))
        self.dtype = torch_dtype(precision)
        # a copy either way: moving it to the device and dtype must not change the caller's module
        transformer = faster_equivalent(transformer) if rewrite and isinstance(transformer, TransformerNet) else copy.deepcopy(transformer)
        self.net = AlignedTransformer(transformer).eval().to(self.device, self.dtype, memory_format=torch.channels_last)
        self.metadata = metadata or StyleMeta()
        if tile_stats not in ("exact", "downscaled"):
            raise UserError(f"tile_stats must be exact or downscaled, got {tile_stats!r}")
        self.tile, self.overlap, self.tile_stats = tile, overlap, tile_stats
        self.preserve_color, self.strength = preserve_color, strength

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", style: str | dict | None = None, **options
    ) -> "Stylizer":
        """``style``: which style (or {name: weight} blend) of a multi-style file."""
        net, meta = load_transformer(path, style)
        return cls(net, meta, device, **options)

    @torch.inference_mode()
    def stylize_tensor(self, images: torch.Tensor, tiled: bool | None = None) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> the same shape, float32, on the input's device.

        ``tiled``: force tiling on or off (with ``tile`` as the tile size); None: tile above ``tile``.
        """
        if images.ndim == 3:
            return self.stylize_tensor(images[None], tiled)[0]
        h, w = images.shape[-2:]
        if min(h, w) < MIN_SIZE:  # narrower than the strided layers and reflection pads need: paint it edge-padded
            grown = F.pad(images, (0, max(0, MIN_SIZE - w), 0, max(0, MIN_SIZE - h)), mode="replicate")
            return self.stylize_tensor(grown, tiled)[..., :h, :w]
        content = images.float()
        if tiled is None:
            tiled = bool(self.tile) and max(h, w) > self.tile
        if tiled:
            align = self.net.align
            pad = (0, (-w) % align, 0, (-h) % align)
            padded = (F.pad(content, pad, mode="reflect") if any(pad) else content).to(self.dtype)  # 4K: no copy
            out = stylize_tiled(self.net.transformer, padded, self.tile, self.overlap, self.tile_stats)[:, :, :h, :w]
        else:
            x = images.to(self.device, self.dtype, non_blocking=True).contiguous(memory_format=torch.channels_last)
            out = self.net(x)
        out = out.float().to(images.device)
        return finish(out, content, self.preserve_color, self.strength).clamp_(0, 1)

    def __call__(self, image):
        if isinstance(image, torch.Tensor):
            return self.stylize_tensor(image)
        from fststyle.images import from_pil, to_pil

        return to_pil(self.stylize_tensor(from_pil(image)))
