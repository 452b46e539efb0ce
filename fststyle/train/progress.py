"""One progress bar for the whole run: step N of max_steps (not one epoch of the folder), its ETA and s/step,
and the style, content and TV terms of the loss rather than one raw total."""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks.progress.progress_bar import ProgressBar
from tqdm.auto import tqdm

TERMS = ("style", "coarse_style", "content", "tv", "stability", "distill", "spectrum", "lattice", "ripple")  # train/<term>, as StyleTransferModule logs them


class RunProgressBar(ProgressBar):
    def __init__(self) -> None:
        super().__init__()
        self.enabled = True
        self.bar: tqdm | None = None

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    @property
    def is_enabled(self) -> bool:
        return self.enabled

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not self.enabled or not trainer.is_global_zero:
            return
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        self.bar = tqdm(total=total, initial=trainer.global_step, desc="training", unit="step", dynamic_ncols=True,
                        bar_format="{desc}: step {n_fmt}/{total_fmt} {bar} [{elapsed}<{remaining}, {rate_inv_fmt}]{postfix}")

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.bar is None:
            return
        self.bar.update(trainer.global_step - self.bar.n)
        metrics = trainer.callback_metrics
        terms = {t: f"{float(metrics[f'train/{t}']):.3g}" for t in TERMS if f"train/{t}" in metrics}
        self.bar.set_postfix(terms, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.close()

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        self.close()
