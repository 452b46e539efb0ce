"""What fststyle adds to Lightning's DDP: learning-rate scaling with the world size, and launch checks.

Lightning does the distribution itself (DDPStrategy, DistributedSampler, rank-0-only checkpoints and
loggers); its cluster environments read torchrun's or SLURM's variables. ``data.batch_size`` is per
device, so the global batch is ``batch_size * devices * num_nodes``.
"""
from __future__ import annotations

import logging
import math

import pytorch_lightning as pl

from fststyle.errors import UserError

log = logging.getLogger(__name__)

LR_SCALING = {"none": lambda world_size: 1.0, "linear": float, "sqrt": math.sqrt}


def scaled_optim(optim: dict, world_size: int) -> dict:
    """``optim.scale_lr_with_world_size``: false/none (default), true/linear (lr * world size) or sqrt.

    The global batch grows with the world size; linear keeps SGD-like steps per image (Goyal et al.),
    sqrt is the gentler rule often preferred for Adam.
    """
    rule = optim.get("scale_lr_with_world_size", False)
    rule = {False: "none", None: "none", True: "linear"}.get(rule, rule)
    if rule not in LR_SCALING:
        raise UserError(f"optim.scale_lr_with_world_size must be false, true, linear or sqrt, got {rule!r}")
    factor = LR_SCALING[rule](world_size)
    if factor != 1.0:
        log.info("lr %.3g x %.3g (%s scaling, world size %d)", optim["lr"], factor, rule, world_size)
    return {**optim, "lr": optim["lr"] * factor}


def check_launch(trainer: pl.Trainer, multirun: bool) -> None:
    """Refuse what would silently go wrong: Lightning starting DDP processes itself inside a Hydra multirun.

    Lightning starts ranks 1..N-1 by re-running the command line, which under ``-m`` is the whole sweep.
    torchrun and SLURM start every rank themselves, so each rank runs the sweep's jobs in step.
    """
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if (
        trainer.world_size > 1
        and environment is not None
        and not environment.creates_processes_externally
        and multirun
    ):
        raise UserError(
            "a multirun (-m) cannot let Lightning start the DDP processes (each would re-run the whole sweep): "
            "start them with torchrun (torchrun --nproc_per_node=N train.py -m ...) or on SLURM "
            "(hydra/launcher=slurm), or run one style per device without trainer=ddp; see docs/cloud.md"
        )
