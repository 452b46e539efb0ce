"""Gatys, Ecker & Bethge's method: optimise the pixels of one image against the perceptual loss.

No network is trained: starting from the content image (or noise, or the style image), the
pixels move so that VGG features match the content at one layer and Gram matrices match the
style at several. The loss network and losses are the training ones (``fststyle.nets.vgg``,
``fststyle.nets.losses``); only the loop over pixels lives here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fststyle.errors import UserError
from fststyle.hardware import PRECISION_TABLE, check_precision, torch_dtype
from fststyle.nets.losses import PerceptualLoss, build_loss

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise", "style")
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}
MIN_SIDE = 16  # pixels: VGG's relu5_x sees 1/16 of the image


@dataclass
class OptimizeSettings:
    """The knobs of one run; ``iterations`` is per pass (one int for all, or one per pass)."""

    iterations: int | Sequence[int] = 500
    optimizer: str = "lbfgs"
    lr: float | None = None
    init: str = "content"
    clamp: bool = True
    scales: Sequence[float] = field(default_factory=list)
    style_scale: float = 1.0
    seed: int = 0
    save_every: int | None = None
    precision: str = "fp32"  # of the VGG passes: fp32 | bf16 | fp16 (autocast; Grams and losses stay fp32)

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.init not in INITS:
            raise UserError(f"init must be one of {list(INITS)}, got {self.init!r}")
        self.scales = sorted(float(s) for s in self.scales)
        if any(not 0 < s < 1 for s in self.scales):
            raise UserError(f"scales are fractions of the final size, each in (0, 1), got {self.scales}")
        passes = len(self.scales) + 1
        its = [self.iterations] * passes if isinstance(self.iterations, int) else list(self.iterations)
        if len(its) != passes or any(not isinstance(n, int) or n < 0 for n in its):
            raise UserError(f"iterations must be a count >= 0, or a list of {passes} counts (one per pass), got {self.iterations}")
        self.iterations = its
        if self.lr is None:
            self.lr = DEFAULT_LR[self.optimizer]
        if self.lr <= 0:
            raise UserError(f"lr must be > 0, got {self.lr}")
        if self.style_scale <= 0:
            raise UserError(f"style_scale must be > 0, got {self.style_scale}")
        check_precision(self.precision, PRECISION_TABLE)
        if self.save_every is not None and self.save_every <= 0:
            raise UserError(f"save_every must be a positive number of iterations or null, got {self.save_every}")

    @property
    def total_iterations(self) -> int:
        return sum(self.iterations)


def build_gatys_loss(loss: dict) -> PerceptualLoss:
    """The shared loss with the Gatys config group's α (content_weight) and β (style_weight); paper normalisation."""
    return build_loss({**loss, "normalization": loss.get("normalization", "paper")}, {"weight": loss["style_weight"]})


def resize_long_side(image: torch.Tensor, long_side: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    scale = long_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def initial_image(init: str, content: torch.Tensor, style: torch.Tensor, seed: int) -> torch.Tensor:
    if init == "content":
        return content.clone()
    if init == "style":
        return F.interpolate(style, size=content.shape[-2:], mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(content.shape, generator=generator).to(content.device)  # white noise


def optimize_image(
    loss: PerceptualLoss,
    content: torch.Tensor,
    style: torch.Tensor,
    settings: OptimizeSettings,
    on_iteration: Callable[[int, torch.Tensor], None] | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Stylize ``content`` (1, 3, H, W) in [0, 1] toward ``style``; returns the image and the loss history.

    With ``settings.scales`` the image is optimised at those fractions of its size first and
    upsampled between passes (coarse to fine); the style image is taken at ``style_scale``
    times the size of each pass. ``on_iteration(i, image)`` runs after every iteration (1-based,
    counted over all passes).
    """
    device = content.device
    dtype = None if settings.precision == "fp32" else torch_dtype(settings.precision)

    # bf16/fp16 convolutions run channels_last, fp32 ones NCHW: each layout's fastest oneDNN path (bench/timing.py
    # conv_rate); the image itself stays NCHW, which L-BFGS flattens
    layout = torch.contiguous_format if dtype is None else torch.channels_last

    def vgg_precision():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    final_long = max(content.shape[-2:])
    passes = [(round(final_long * f), round(final_long * f * settings.style_scale)) for f in [*settings.scales, 1.0]]
    for long_side, style_long in passes:  # VGG pools 4 times before relu5_x: at least 1 pixel must remain
        for name, shape, side in (("image", content.shape, long_side), ("style image", style.shape, style_long)):
            if min(shape[-2:]) * side / max(shape[-2:]) < MIN_SIDE:
                raise UserError(
                    f"a pass would shrink the {name} to a short side below {MIN_SIDE} px (long side {side}); "
                    "use a larger size=, larger scales= or style_scale="
                )
    history: list[dict[str, float]] = []
    image: torch.Tensor | None = None
    done = 0
    skip_dynamo_import()  # before the first optimizer of the process is built
    for (long_side, style_long), iterations in zip(passes, settings.iterations):
        target = content if long_side == final_long else resize_long_side(content, long_side)
        style_image = resize_long_side(style, style_long).to(device)
        loss.set_style(style_image)
        with vgg_precision():
            content_targets = loss.content_features(target.contiguous(memory_format=layout))
        if image is None:
            image = initial_image(settings.init, target, style_image, settings.seed)
        else:  # coarse to fine: the previous pass's result, upsampled
            image = F.interpolate(image, size=target.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)
        image = image.detach().requires_grad_(True)
        if settings.optimizer == "lbfgs":
            # One iteration per step() (no line search, as in Gatys' and jcjohnson's code); the
            # curvature history lives in the optimizer's state across steps.
            optimizer = torch.optim.LBFGS([image], lr=settings.lr, max_iter=1, history_size=50)
        else:
            optimizer = torch.optim.Adam([image], lr=settings.lr)

        last: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            with vgg_precision():
                losses = loss(image.contiguous(memory_format=layout), content_targets=content_targets)
            losses["total"].backward()
            last.update({k: v.detach() for k, v in losses.items()})
            return losses["total"]

        h, w = target.shape[-2:]
        bar = tqdm(range(iterations), desc=f"gatys {w}x{h}", disable=not progress, unit="it", dynamic_ncols=True)
        for _ in bar:
            optimizer.step(closure)
            if settings.clamp:
                with torch.no_grad():
                    image.clamp_(0, 1)
            done += 1
            record = {k: float(v) for k, v in last.items()}
            if not math.isfinite(record["total"]):
                raise UserError(
                    f"the loss diverged (total={record['total']}) at iteration {done}: lower lr, or the weights"
                )
            history.append(record)
            bar.set_postfix({k: f"{v:.3g}" for k, v in record.items()}, refresh=False)
            if on_iteration is not None:
                on_iteration(done, image.detach())
    assert image is not None
    return image.detach().clamp(0, 1), history


def skip_dynamo_import() -> None:
    """Build torch.optim optimizers without importing ``torch._dynamo``, which takes longer than the rest of a short run.

    torch wraps ``Optimizer.add_param_group`` and ``zero_grad`` so that torch.compile leaves them alone, and the
    wrapper imports ``torch._dynamo`` on its first call to say so. Nothing here is compiled: where dynamo is not
    loaded yet, the two methods are marked as already handled (the attribute the wrapper caches). A torch without
    that attribute just imports dynamo as before (docs/BENCHMARKS.md, Gatys start-up)."""
    import sys

    if "torch._dynamo" in sys.modules:
        return
    for name in ("add_param_group", "zero_grad"):
        method = getattr(getattr(torch.optim.Optimizer, name), "__wrapped__", None)
        if method is not None and not hasattr(method, "__dynamo_disable"):
            setattr(method, "__dynamo_disable", method)


def intermediate_path(output: Path, iteration: int) -> Path:
    return output.with_name(f"{output.stem}_{iteration:05d}{output.suffix}")


