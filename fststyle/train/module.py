"""The LightningModule: a transformer net trained against a frozen perceptual loss."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.utils import make_grid

from fststyle.errors import UserError
from fststyle.images import save_image
from fststyle.measures.quality import STYLE_SIZE, QualityMeter
from fststyle.measures.weave import ripple_share, spectrum_gap
from fststyle.nets.losses import build_loss, lattice_energy
from fststyle.nets.stability import stability_loss
from fststyle.nets.transformer import TransformerConfig, TransformerNet
from fststyle.style import checksum_for, load_style

log = logging.getLogger(__name__)


# How training steps run (conf/train.yaml `speed:`); see docs/BENCHMARKS.md for what each one buys.
SPEED_DEFAULTS = {
    "channels_last": True,  # VGG loss network in NHWC, the layout oneDNN and cuDNN convolve fastest
    "compile": False,  # torch.compile transformer and loss: faster steps, but the first one waits for the compiler
    "keep_freed_memory": True,  # glibc keeps each step's freed activations for the next (fststyle/memory.py)
}


COLLAPSED_STD = 1e-3  # pixel std ([0, 1] units) of a validation batch below which every output is one flat colour


def phase_crop(output: torch.Tensor, content: torch.Tensor, jitter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random crop of both, offset 0..jitter-1 px, for the VGG loss only (``loss.phase_jitter``).

    The transformer paints on its own 4-px grid (its stride) and the VGG pools on an 8-px one; both start at the
    crop's corner, so a pattern locked to the VGG's pooling phase pays in the loss every step. A random offset between
    the two grids takes that reward away (docs/QUALITY.md, the weave)."""
    if jitter <= 1:
        return output, content
    dy, dx = (int(v) for v in torch.randint(0, jitter, (2,)))
    h, w = output.shape[-2] - jitter + 1, output.shape[-1] - jitter + 1
    return output[..., dy:dy + h, dx:dx + w], content[..., dy:dy + h, dx:dx + w]


def border_reflect(output: torch.Tensor, content: torch.Tensor, margin: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Both mirrored ``margin`` px outward, for the VGG loss only (``loss.border_reflect``).

    Judged as it is, a picture's border is where a network can paint the painting's marks cheaply: la_muse paints its
    mirror's frame there as stripes, which lower its style term more than they raise its content term. Judged mirrored
    (the VGG sees no border, only more picture), the same stripes cost three times the content and no longer pay
    (measured: docs/QUALITY.md, sixteenth round)."""
    if margin <= 0:
        return output, content
    pad = (margin,) * 4
    return F.pad(output, pad, mode="reflect"), F.pad(content, pad, mode="reflect")


class StyleTransferModule(pl.LightningModule):
    """Hyper-parameters are plain dicts (the Hydra config groups), so checkpoints load weights-only."""

    def __init__(
        self, model: dict, loss: dict, style: dict, optim: dict, config: dict | None = None, speed: dict | None = None,
        norms_only: bool = False, teacher: nn.Module | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["teacher"])
        # a multi-style config (conf/style/multi.yaml, expanded by fststyle.style.expand_styles) lists its styles
        self.styles = style.get("styles") or [style]
        trained = style.get("train") or [s["name"] for s in self.styles]
        self.trained = [i for i, s in enumerate(self.styles) if s["name"] in trained]  # indices this run trains
        self.transformer = TransformerNet(TransformerConfig(**{**model, "styles": len(self.styles)}))
        self.loss = build_loss(loss, style)
        self.norms_only = norms_only  # init_from: train only the norm tables (Dumoulin et al.'s new-style fit)
        if norms_only:
            trainable = {id(p) for p in self.transformer.norm_parameters()}
            for param in self.transformer.parameters():
                param.requires_grad_(id(param) in trainable)  # the shared convolutions stay as trained
        self.phase_jitter = int(loss.get("phase_jitter", 0))  # see phase_crop
        self.border_reflect = int(loss.get("border_reflect", 0))  # see border_reflect
        self.lattice_weight = float(loss.get("lattice_weight", 0.0))  # against the weave: lattice_energy
        self.lattice_taper = bool(loss.get("lattice_taper", False))  # absent: the flat mean of older recipes
        self.coarse_style_weight = float(loss.get("coarse_style_weight", 0.0))  # x the style term at half size
        self.ripple = {k: float(loss.get(f"ripple_{k}", d)) for k, d in (("weight", 0.0), ("peak", 100.0), ("margin", 2.0))}
        self.stability = {k: loss.get(f"stability_{k}", d) for k, d in (("weight", 0.0), ("noise", 0.02), ("shift", 3))}
        # teacher=FILE: a trained network whose outputs the transformer also learns to match (a lite twin's
        # distillation). Frozen, and kept out of checkpoints like the VGG: it is rebuilt from the run's config. Left in
        # train mode like the VGG (its instance norms keep no running statistics, so no layer acts differently).
        self.teacher = teacher.train().requires_grad_(False) if teacher is not None else None
        self.distill_weight = float(loss.get("distill_weight", 0.0)) if teacher is not None else 0.0
        self.spectrum_weight = float(loss.get("spectrum_weight", 0.0)) if teacher is not None else 0.0
        self.style = style
        self.optim = optim
        self.speed = {**SPEED_DEFAULTS, **(speed or {})}
        unknown = set(self.speed) - set(SPEED_DEFAULTS)
        if unknown:
            raise UserError(f"unknown speed option(s) {sorted(unknown)}; known: {', '.join(SPEED_DEFAULTS)}")
        self.compiled = False
        self.quality: QualityMeter | None = None  # style/content distances of the validation batch

    # -- style target: computed once per process from the style image ------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit" and not bool(self.loss.style_ready):
            for i in self.trained:
                style = self.styles[i]
                self.loss.set_style(load_style(style["image"], checksum_for(style), style.get("size")).to(self.device), i)
        if stage == "fit" and self.quality is None:
            self.quality = self.quality_meter()
        if stage == "fit" and self.device.type == "cpu" and str(self.trainer.precision).startswith("bf16"):
            if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
                log.warning("this CPU has no native bf16 (AVX512-BF16/AMX): trainer.precision=32-true is faster here")
        if stage == "fit" and self.speed["compile"] and not self.compiled:
            self.transformer.compile()  # in place: state_dict keys, checkpoints and exports stay the same
            self.loss.compile()
            self.compiled = True

    def quality_meter(self) -> QualityMeter | None:
        """fststyle.quality's measure on the loss's own VGG, when that is a VGG16 reaching relu4_3 (one style only)."""
        if self.multi:
            log.info("no style/content distances in validation of a multi-style network: python -m fststyle.evaluate measures each style")
            return None
        image = load_style(self.style["image"], checksum_for(self.style), STYLE_SIZE).to(self.device)
        try:
            return QualityMeter(self.loss.network, image)
        except ValueError as e:
            log.info("no style/content distances in validation: %s", e)
            return None

    # The VGG (and a teacher) are frozen and rebuilt from the config: keep them out of checkpoints (58 MB each).
    def frozen_state(self) -> dict[str, torch.Tensor]:
        state = self.loss.network.state_dict(prefix="loss.network.")
        if self.teacher is not None:
            state.update(self.teacher.state_dict(prefix="teacher."))
        return state

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(("loss.network.", "teacher."))]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key, value in self.frozen_state().items():
            state.setdefault(key, value)
        self.resume_with_this_lr(checkpoint)

    def resume_with_this_lr(self, checkpoint: dict[str, Any]) -> None:
        """``resume=true optim.lr=X`` trains on at X (the schedule's position kept): a checkpoint's own rates
        would otherwise win silently, e.g. after a run diverged at too high a rate."""
        groups = [g for o in checkpoint.get("optimizer_states") or [] for g in o.get("param_groups", [])]
        if not groups:
            return
        before = float(groups[0].get("initial_lr", groups[0]["lr"]))
        wanted = float(self.optim["lr"])
        if math.isclose(before, wanted, rel_tol=1e-9):
            return
        ratio = wanted / before
        for group in groups:
            group["lr"] = float(group["lr"]) * ratio
            if "initial_lr" in group:
                group["initial_lr"] = float(group["initial_lr"]) * ratio
        for scheduler in checkpoint.get("lr_schedulers") or []:
            if "base_lrs" in scheduler:
                scheduler["base_lrs"] = [float(b) * ratio for b in scheduler["base_lrs"]]
        log.warning("resuming with optim.lr=%g (the checkpoint was training at %g)", wanted, before)

    @property
    def multi(self) -> bool:
        return len(self.styles) > 1

    # -- steps ------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.transformer(images)

    def pick_styles(self, batch_size: int, random: bool = True) -> torch.Tensor | None:
        """Multi-style: a style index per image (random in training, in turn in validation), set on the network."""
        if not self.multi:
            return None
        choices = torch.tensor(self.trained, device=self.device)
        picks = torch.randint(len(choices), (batch_size,), device=self.device) if random else torch.arange(batch_size, device=self.device) % len(choices)
        index = choices[picks]
        self.transformer.select(index)
        return index

    @staticmethod
    def to_float(batch: torch.Tensor) -> torch.Tensor:
        return batch.float().div_(255) if batch.dtype == torch.uint8 else batch

    def loss_layout(self, output: torch.Tensor, content: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The VGG pass in channels_last when asked. The transformer stays NCHW: its instance norms
        would convert every activation back and forth (measured slower under bf16 on CPU)."""
        if not self.speed["channels_last"]:
            return output, content
        return output.contiguous(memory_format=torch.channels_last), content.contiguous(memory_format=torch.channels_last)

    def step_losses(self, content: torch.Tensor, style_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The training step's losses on a [0, 1] batch (also what the speed benchmark and its quality test time)."""
        output = self.transformer(content)
        judged, reference = self.loss_layout(*border_reflect(*phase_crop(output, content, self.phase_jitter), self.border_reflect))
        losses = self.loss(judged, reference, style_index=style_index)
        if self.coarse_style_weight > 0:  # the painting's strokes twice as large: PerceptualLoss.coarse_style
            losses["coarse_style"] = self.coarse_style_weight * self.loss.coarse_style(judged, 2, style_index)
            losses["total"] = losses["total"] + losses["coarse_style"]
        if self.lattice_weight > 0:
            losses["lattice"] = self.lattice_weight * lattice_energy(output, period=self.transformer.config.stride, taper=self.lattice_taper)
            losses["total"] = losses["total"] + losses["lattice"]
        if self.ripple["weight"] > 0:  # the weave off the grid: sharp spectral peaks the photo does not have
            losses["ripple"] = self.ripple["weight"] * ripple_share(output, content, self.ripple["peak"], self.ripple["margin"])
            losses["total"] = losses["total"] + losses["ripple"]
        if self.stability["weight"] > 0:  # Gupta et al.: the same picture shifted and noisy paints the same
            term = self.stability["weight"] * stability_loss(
                self.transformer, content, output, self.stability["noise"], int(self.stability["shift"])
            )
            losses["stability"] = term
            losses["total"] = losses["total"] + term
        if self.distill_weight > 0 or self.spectrum_weight > 0:
            with torch.no_grad():
                target = self.teacher(content)
        if self.distill_weight > 0:  # Hinton et al.'s distillation, on pixels: paint what the teacher paints
            term = self.distill_weight * F.mse_loss(output.float(), target.float())
            losses["distill"] = term
            losses["total"] = losses["total"] + term
        if self.spectrum_weight > 0:  # ... and its fine texture, no weave of the twin's own: measures/weave.py spectrum_gap
            losses["spectrum"] = self.spectrum_weight * spectrum_gap(output, target)
            losses["total"] = losses["total"] + losses["spectrum"]
        return losses

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        losses = self.step_losses(self.to_float(batch), self.pick_styles(len(batch)))
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=False)  # the bar: fststyle/train/progress.py
        return losses["total"]

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        content = self.to_float(batch)
        index = self.pick_styles(len(content), random=False)
        output = self.transformer(content)
        losses = self.loss(output, content, style_index=index)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, sync_dist=True)
        spread = float(output.float().std())
        if spread < COLLAPSED_STD:  # a flat picture whatever the photo: the network has collapsed
            raise UserError(f"the outputs collapsed to a flat image (pixel std {spread:.2g}) at step {self.global_step}: "
                            "training stopped, nothing exported; lower optim.lr or style.weight and train again")
        if self.quality is not None:
            distances = self.quality(output, content)
            self.log_dict({f"val/{k}_distance": v.mean() for k, v in distances.items()}, sync_dist=True)
        if batch_idx == 0 and self.trainer.is_global_zero:
            self.log_samples(content, *self.stylize_each(content, output))

    def stylize_each(self, content: torch.Tensor, output: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The batch in every trained style (a row each in the sample grid); ``output`` is the one-style result."""
        if not self.multi:
            return [self.transformer(content) if output is None else output]
        rows = []
        for i in self.trained:
            self.transformer.select(i)
            rows.append(self.transformer(content))
        return rows

    def log_samples(self, content: torch.Tensor, *outputs: torch.Tensor) -> None:
        """A grid with content images on top and their stylizations below (a row per style), to disk and to wandb."""
        grid = make_grid(torch.cat([content, *(o.float() for o in outputs)]).clamp(0, 1).cpu(), nrow=len(content), padding=2)
        folder = Path(self.trainer.default_root_dir) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        save_image(grid, folder / f"step_{self.global_step:07d}.jpg", quality=90)
        log_image = getattr(self.logger, "log_image", None)  # WandbLogger has it
        if log_image is not None:
            log_image(key="samples", images=[grid], caption=["content (top) | stylized (bottom)"], step=self.global_step)

    @torch.no_grad()
    def final_samples(self) -> None:
        """The sample grid of the finished network (at the end of training, whatever the validation interval)."""
        datamodule = self.trainer.datamodule
        if datamodule is None or getattr(datamodule, "val_set", None) is None:
            return
        content = self.to_float(next(iter(datamodule.val_dataloader())).to(self.device))
        self.log_samples(content, *self.stylize_each(content))

    # -- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self):
        params = self.transformer.norm_parameters() if self.norms_only else self.transformer.parameters()
        optimizer = torch.optim.Adam(params, lr=self.optim["lr"])
        schedule = self.optim.get("schedule", "constant")
        total = max(1, int(self.trainer.max_steps)) if self.trainer and self.trainer.max_steps > 0 else 1
        final = self.optim.get("final_lr_fraction", 0.1)
        if schedule == "constant":
            return optimizer
        if schedule == "cosine":
            lam = lambda step: final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
        elif schedule == "linear":
            lam = lambda step: 1 - (1 - final) * min(step, total) / total  # noqa: E731
        else:
            raise UserError(f"optim.schedule must be constant, cosine or linear, got {schedule!r}")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lam)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
