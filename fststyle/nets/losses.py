"""Perceptual losses: feature reconstruction, Gram-matrix style, total variation.

By default (``normalization="mse"``) every term is a mean over elements and Gram matrices are
divided by C*H*W, so a loss weight means the same at any image size (Johnson et al.'s
normalisation). ``normalization="paper"`` uses Gatys et al.'s sums instead (eqs. 1 and 4):
½Σ(F-P)² for content and 1/(4N²M²)Σ(G-A)² per style layer, per image. Grams come out in fp32 and every
reduction is done in fp32 even under autocast: bf16 sums over H*W lose too many digits.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from fststyle.errors import UserError
from fststyle.nets.vgg import LossNetwork


class GramProduct(torch.autograd.Function):
    """X Xᵀ for X (N, C, M), whose gradient (dG + dGᵀ) X is one product in X's own layout.

    Autograd's backward of ``bmm(X, Xᵀ)`` makes two products, one of them transposed, and adds them through a
    strided copy, which on the CPU cost more than the products themselves (docs/BENCHMARKS.md).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.bmm(x, x.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        symmetric = (grad + grad.transpose(1, 2)).to(x.dtype)
        if x.transpose(1, 2).is_contiguous():  # X is an NHWC buffer seen as (N, C, M): dXᵀ = Xᵀ (dG + dGᵀ)
            return torch.bmm(x.transpose(1, 2), symmetric).transpose(1, 2)
        return torch.bmm(symmetric, x)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) in fp32, normalised by C*H*W. The product runs in the features' dtype (bf16
    under autocast, accumulated in fp32 by the BLAS), so a bf16 step casts nothing."""
    n, c, h, w = features.shape
    if features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous():
        x = features.permute(0, 2, 3, 1).reshape(n, h * w, c).transpose(1, 2)  # NHWC seen as (N, C, M): a view
    else:
        x = features.reshape(n, c, h * w)
    return GramProduct.apply(x).float() / (c * h * w)


def channel_mean(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, 1): the 'mean' style target (first moments only)."""
    return features.float().mean(dim=(2, 3)).unsqueeze(-1)


STYLE_STATISTICS = {"gram": gram_matrix, "mean": channel_mean}
NORMALIZATIONS = ("mse", "paper")
BALANCES = ("absolute", "relative")  # style.balance: how a style layer's term is scaled (PerceptualLoss.layer_weights)


def content_loss(output: torch.Tensor, target: torch.Tensor, normalization: str = "mse") -> torch.Tensor:
    if normalization == "paper":  # Gatys et al. eq. 1: ½Σ(F - P)², averaged over the batch
        return 0.5 * (output.float() - target.float()).pow(2).sum() / output.shape[0]
    return F.mse_loss(output.float(), target.float())


def style_loss(
    output_stat: torch.Tensor, target_stat: torch.Tensor, normalization: str = "mse", weights: torch.Tensor | None = None
) -> torch.Tensor:
    """MSE between style statistics; a single target (1, C, C) broadcasts over the batch.

    ``paper``: Gatys et al. eq. 4, 1/(4N²M²)Σ(G - A)² with raw Grams G = FFᵀ; our Grams are
    already divided by N*M, so that is ¼Σ(g - a)², averaged over the batch.
    ``weights`` (N,): each image's own style weight (a multi-style batch), applied before the batch mean.
    """
    diff = (output_stat - target_stat).pow(2)
    per_image = 0.25 * diff.sum(dim=(1, 2)) if normalization == "paper" else diff.mean(dim=(1, 2))
    if weights is not None:
        per_image = per_image * weights
    return per_image.mean()


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels: the smoothness prior of Johnson et al."""
    x = image.float()
    return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()


def lattice_energy(image: torch.Tensor, period: int = 4, window: int = 32, taper: bool = False) -> torch.Tensor:
    """Mean squared amplitude of the pattern an image repeats on a ``period``-px lattice, per ``window``-px block.

    Each block's pixels are averaged by their phase (y mod period, x mod period); a texture that is not locked
    to the lattice averages to the block's mean at every phase, the transformer's weave (its total stride is 4)
    does not. Only the spectral lines at multiples of 1/period cycles/px count: the painting's own fine texture
    is left alone.

    With flat means a smooth gradient across a block reads as a sawtooth on the lattice (the block's edges leak
    low frequencies onto its lines), so a network trained against it learned to paint the opposite sawtooth
    over every gradient: a grid of its own (docs/QUALITY.md, twelfth round). ``taper`` weights each block by a
    Hann window, which keeps that leakage off the lines."""
    x = image.float()
    n, c, h, w = x.shape
    h, w = h // window * window, w // window * window
    if h == 0 or w == 0:  # smaller than one block: no lattice to measure
        return (x * 0).sum()
    cells = window // period
    x = x[..., :h, :w].reshape(n, c, h // window, cells, period, w // window, cells, period)
    if taper:
        hann = torch.hann_window(window + 2, periodic=False, dtype=x.dtype, device=x.device)[1:-1].reshape(cells, period)
        x = x * hann.view(cells, period, 1, 1, 1) * hann
        phases = x.sum(dim=(3, 6)) / (hann.sum(0).view(period, 1, 1) * hann.sum(0))
    else:
        phases = x.mean(dim=(3, 6))  # (n, c, blocks_y, period, blocks_x, period)
    return (phases - phases.mean(dim=(3, 5), keepdim=True)).pow(2).mean()


class PerceptualLoss(nn.Module):
    """Content + style + TV against one style image (or ``styles`` of them), on a shared frozen ``LossNetwork``.

    Style targets are computed once (``set_style``) and kept as buffers, so they travel with
    the module to any device and into checkpoints. With several styles each image of a batch is
    measured against its own style's targets and weight (``style_index``).
    """

    def __init__(
        self,
        network: LossNetwork,
        content_layers: Mapping[str, float],
        style_layers: Mapping[str, float],
        content_weight: float = 1.0,
        style_weight: float = 5.0,
        tv_weight: float = 0.0,
        style_target: str = "gram",
        normalization: str = "mse",
        styles: int = 1,
        style_weights: list[float] | None = None,
        balance: str = "absolute",
    ):
        super().__init__()
        if style_target not in STYLE_STATISTICS:
            raise UserError(f"loss.style_target must be one of {sorted(STYLE_STATISTICS)}, got {style_target!r}")
        if normalization not in NORMALIZATIONS:
            raise UserError(f"loss.normalization must be one of {list(NORMALIZATIONS)}, got {normalization!r}")
        if balance not in BALANCES:
            raise UserError(f"style.balance must be one of {', '.join(BALANCES)}, got {balance!r}")
        self.normalization = normalization
        self.balance = balance
        self.network = network
        self.content_layers = dict(content_layers)
        self.style_layers = dict(style_layers)
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        self.style_target = style_target
        self.statistic = STYLE_STATISTICS[style_target]
        # Shapes are known up front, so a checkpoint loads into a fresh module before set_style().
        for name in self.style_layers:
            c = network.channels(name)
            self.register_buffer(f"style_{name}", torch.zeros(styles, c, c if style_target == "gram" else 1))
            if balance == "relative":  # 1 / the painting's mean squared statistic, per style (set_style)
                self.register_buffer(f"style_scale_{name}", torch.ones(styles))
        self.register_buffer("style_ready", torch.tensor(False))
        # per style, relative to style_weight (config, not state: old checkpoints load unchanged)
        self.register_buffer("style_weights", torch.tensor(style_weights or [1.0] * styles), persistent=False)

    @torch.no_grad()
    def set_style(self, style_image: torch.Tensor, index: int = 0) -> None:
        """Compute and store the style statistics of an RGB [0, 1] (1, 3, H, W) image (as style ``index``)."""
        feats = self.network(style_image, self.style_layers)
        for name in self.style_layers:
            target = self.statistic(feats[name])[0]
            getattr(self, f"style_{name}")[index].copy_(target)
            if self.balance == "relative":
                getattr(self, f"style_scale_{name}")[index] = 1 / target.pow(2).mean().clamp_min(1e-30)
        self.style_ready.fill_(True)

    def layer_weights(self, name: str, weights: torch.Tensor | None, style_index: torch.Tensor | None) -> torch.Tensor | None:
        """Per-image weights of one layer's style term: the styles' own weights, and with ``balance="relative"``
        1 / the painting's mean squared Gram entry, so the term is the squared relative Gram distance (the
        evaluator's measure) and one weight means the same for any painting."""
        if self.balance != "relative":
            return weights
        scale = getattr(self, f"style_scale_{name}")
        scale = scale[style_index] if style_index is not None else scale[:1]
        return scale if weights is None else weights * scale

    def style_targets(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, f"style_{name}") for name in self.style_layers}

    def content_features(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """Content targets; the VGG pass stops at the deepest content layer."""
        with torch.no_grad():
            return self.network(content, self.content_layers)

    def style_distance(self, feats: Mapping[str, torch.Tensor], style_index: torch.Tensor | None = None) -> torch.Tensor:
        """The unweighted style term of features ``feats`` (each image against its style, style 0 when None)."""
        if not self.style_ready:
            raise RuntimeError("PerceptualLoss.set_style() was never called")
        targets = self.style_targets()
        if style_index is not None:
            targets = {name: t[style_index] for name, t in targets.items()}
            weights = self.style_weights[style_index]
        else:
            targets = {name: t[:1] for name, t in targets.items()}
            weights = None if len(self.style_weights) == 1 else self.style_weights[:1]
        return sum(
            w * style_loss(self.statistic(feats[name]), targets[name], self.normalization, self.layer_weights(name, weights, style_index))
            for name, w in self.style_layers.items()
        )

    def coarse_style(self, output: torch.Tensor, factor: int = 2, style_index: torch.Tensor | None = None) -> torch.Tensor:
        """The style term of ``output`` shrunk ``factor`` times (box filter): the painting's strokes must come out
        ``factor`` times larger to match it there, and the deepest layer sees ``factor`` times more of the picture."""
        small = F.avg_pool2d(output, factor)
        return self.style_weight * self.style_distance(self.network(small, set(self.style_layers)), style_index)

    def forward(
        self,
        output: torch.Tensor,
        content: torch.Tensor | None = None,
        content_targets: Mapping[str, torch.Tensor] | None = None,
        style_index: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Weighted losses of ``output``; pass the content image or its precomputed features.

        ``style_index`` (N,): which style each image is measured against (style 0 for all when None).
        """
        if content_targets is None:
            if content is None:
                raise ValueError("need content or content_targets")
            content_targets = self.content_features(content)
        feats = self.network(output, set(self.content_layers) | set(self.style_layers))
        norm = self.normalization
        c = sum(w * content_loss(feats[name], content_targets[name], norm) for name, w in self.content_layers.items())
        tv = total_variation(output)
        content_term = self.content_weight * c
        style_term = self.style_weight * self.style_distance(feats, style_index)
        tv_term = self.tv_weight * tv
        return {
            "content": content_term,
            "style": style_term,
            "tv": tv_term,
            "total": content_term + style_term + tv_term,
        }


def build_loss(loss: Mapping, style: Mapping) -> "PerceptualLoss":
    """The perceptual loss of a ``loss`` config group, with ``style['weight']`` on the style term
    (a multi-style config: each of ``style['styles']`` with its own weight).

    ``style['layers']`` multiplies the weights of ``loss['style_layers']`` for one style: with mse
    normalisation relu4_3's Gram term is ~1e4 times smaller than the others', so a style that needs the
    painting's large forms scales it up (docs/QUALITY.md). Layers the loss does not use stay out."""
    styles = style.get("styles") or [style]
    style_layers = dict(loss["style_layers"])
    if len(styles) == 1:
        for name, scale in (style.get("layers") or {}).items():
            if name in style_layers:
                style_layers[name] = style_layers[name] * float(scale)
    network = LossNetwork(
        network=loss["network"],
        weights=str(loss["weights"]),
        layers=[*loss["content_layers"], *style_layers],
        pooling=loss.get("pooling", "max"),
        preprocessing=loss.get("preprocessing", "auto"),
    )
    return PerceptualLoss(
        network,
        content_layers=loss["content_layers"],
        style_layers=style_layers,
        content_weight=loss["content_weight"],
        style_weight=1.0 if len(styles) > 1 else style["weight"],
        tv_weight=loss["tv_weight"],
        style_target=loss.get("style_target", "gram"),
        normalization=loss.get("normalization", "mse"),
        styles=len(styles),
        style_weights=[float(s.get("weight", 1.0)) for s in styles] if len(styles) > 1 else None,
        balance=str(style.get("balance") or "absolute"),
    )

