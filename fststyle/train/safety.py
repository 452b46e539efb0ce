"""What keeps a long training run alive and honest: atomic and weights-only checkpoints, a checkpoint
on SIGTERM (preemption), SLURM requeue, a stop on a non-finite loss, and a report of skipped images.

docs/RELIABILITY.md says what the user sees in each case.
"""
from __future__ import annotations

import logging
import math
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from fststyle.atomic import atomic_path
from fststyle.errors import UserError
from fststyle.stylefile import load_checkpoint_file

log = logging.getLogger(__name__)

EXIT_PREEMPTED = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite: training stopped before the bad step touched the weights."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written next to their final name, fsynced, then renamed over it, and read weights-only.

    Lightning's own writer stages the file in the system temp folder and moves it into place,
    which is a plain (interruptible) copy whenever that folder is on another filesystem than the
    run dir, the usual case on clusters. A rename within one folder is atomic: a kill at any
    moment leaves either the previous complete checkpoint or the new one.
    Loading is always ``weights_only=True``: a checkpoint cannot run code when resumed.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        bad = [k for k, v in checkpoint.get("state_dict", {}).items() if torch.is_tensor(v) and v.is_floating_point()
               and not torch.isfinite(v).all()]
        if bad:  # never replace a good checkpoint by a broken one
            log.warning("not saving %s: weights %s hold NaN/Inf; the previous checkpoint stays", path, bad[:3])
            return
        if "://" in str(path):  # remote (s3://, gs://): the object store's upload is atomic already
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        if path.is_file():  # one generation back: a newest checkpoint that turns out broken falls back to it
            previous = previous_generation(path)
            with atomic_path(previous, keep_suffix=False) as tmp:
                shutil.copyfile(path, tmp)
        with atomic_path(path, keep_suffix=False) as tmp, open(tmp, "wb") as f:  # same folder: the rename is atomic
            torch.save(checkpoint, f)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, map_location=map_location or "cpu", weights_only=True)
        return load_checkpoint_file(path)  # the style file's one checkpoint reader: weights-only, checked


def previous_generation(path: Path) -> Path:
    """``last.ckpt`` -> ``last.prev.ckpt``: the checkpoint before the newest."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def usable_checkpoint(path: Path, model: dict, check_resumable) -> Path:
    """``path`` if it loads and fits ``model`` (``check_resumable``); else its previous generation, said in one
    line; else the error."""
    try:
        check_resumable(path, model)
        return path
    except UserError as error:
        previous = previous_generation(Path(path))
        if "another architecture" in str(error) or not previous.is_file():
            raise
        check_resumable(previous, model)
        log.warning("%s is unreadable (%s): resuming from the one before it, %s", path, str(error)[:120], previous)
        return previous


class RunLock:
    """One training per run folder: ``<run_dir>/.lock`` holds the owner's pid, host and start time.

    A second run into the same folder refuses with one line naming the first; a lock whose process is gone
    (kill -9, a crash) is taken over with one line. Only the first process of a job takes it (DDP ranks and
    nodes share the folder).
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.held = False

    @staticmethod
    def first_process() -> bool:
        env = os.environ
        return all(env.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))

    def acquire(self) -> "RunLock":
        import json
        import socket
        import time

        if not self.first_process():
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    owner = json.loads(self.path.read_text() or "{}")
                except (OSError, ValueError):
                    owner = {}
                if self.alive(owner):
                    raise UserError(
                        f"{self.path.parent} is in use by another training (pid {owner.get('pid')} on {owner.get('host')}, "
                        f"started {owner.get('started')}): wait for it to finish, or pick another run_dir=DIR"
                    ) from None
                log.warning("%s: taking over a stale lock (pid %s on %s, started %s, is gone)", self.path.parent,
                            owner.get("pid"), owner.get("host"), owner.get("started"))
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise UserError(f"{self.path}: could not take the run folder's lock")

    @staticmethod
    def alive(owner: dict) -> bool:
        import socket

        pid = owner.get("pid")
        if not isinstance(pid, int):
            return False
        if owner.get("host") != socket.gethostname():
            return True  # another machine's process: cannot check, so assume it runs
        if pid == os.getpid():
            return False  # this process, from a run that ended without releasing it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def latest_checkpoint(run_dir: Path, checkpoint_dir: Path) -> Path | None:
    """The newest of ``checkpoints/last.ckpt`` and the ``hpc_ckpt_N.ckpt`` a SLURM requeue leaves in the run dir."""
    candidates = [checkpoint_dir / "last.ckpt"]
    hpc = [p for p in run_dir.glob("hpc_ckpt_*.ckpt") if re.fullmatch(r"hpc_ckpt_\d+\.ckpt", p.name)]
    candidates += sorted(hpc, key=lambda p: int(p.stem.rsplit("_", 1)[1]))[-1:]
    existing = [p for p in candidates if p.is_file()]
    return max(existing, key=lambda p: p.stat().st_mtime_ns) if existing else None


def cluster_plugins(requeue: bool) -> list:
    """On SLURM: SIGUSR1 (sbatch --signal=USR1@90) saves ``hpc_ckpt_N.ckpt`` and requeues the job."""
    if not SLURMEnvironment.detect():
        return []
    return [SLURMEnvironment(auto_requeue=requeue, requeue_signal=signal.SIGUSR1)]


def resume_command(argv: list[str] | None = None) -> str:
    """The command line that continues this run: the same options with ``resume=true``."""
    import os
    import shlex
    import sys

    argv = sys.argv if argv is None else argv
    program = os.path.basename(argv[0]) if argv else "train.py"
    program = program if program.startswith("fststyle") else f"python {program}"
    options = [shlex.quote(a) for a in argv[1:] if not a.startswith(("resume=", "+resume="))]
    return " ".join([program, *options, "resume=true"])


class CheckpointOnPreemption(Callback):
    """SIGTERM (preemption, ``scancel``, a time limit) or Ctrl-C -> ``last.ckpt`` is saved before the process exits,
    with the command that resumes it.

    Lightning turns SIGTERM into a ``SIGTERMException`` once the current batch is done; Ctrl-C is caught the same
    way here (a flag set by the signal, acted on between steps), so the checkpoint is never taken halfway through
    an optimizer update. A second Ctrl-C stops at once.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.interrupted = False
        self._previous = None

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be handled on the main thread

        def on_sigint(signum, frame):
            if self.interrupted:  # the second Ctrl-C: no waiting for the step
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt
            self.interrupted = True
            print("\nCtrl-C: saving a checkpoint after this step (Ctrl-C again to stop at once)", flush=True)

        self._previous = signal.signal(signal.SIGINT, on_sigint)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        stop = self.interrupted
        if trainer.world_size > 1:  # every rank stops at the same step, or the others hang in the next all-reduce
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            self.save(trainer, "Ctrl-C")
            raise SystemExit(130)  # 128 + SIGINT, what a shell reports for an interrupted command

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def save(self, trainer: pl.Trainer, why: str) -> None:
        trainer.save_checkpoint(self.path)
        if trainer.is_global_zero:
            log.warning("%s: saved %s at step %d; to continue: %s", why, self.path, trainer.global_step, resume_command())

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, module)
        if isinstance(exception, SIGTERMException):
            self.save(trainer, "SIGTERM")
        # any other failure may have left the model broken: keep the last good checkpoint


class StopOnNonFiniteLoss(Callback):
    """Stop at the first NaN/Inf loss, before its backward pass: the weights and checkpoints stay good."""

    def on_before_backward(self, trainer: pl.Trainer, module: pl.LightningModule, loss: torch.Tensor) -> None:
        finite = bool(torch.isfinite(loss.detach()).all())
        if trainer.world_size > 1:  # every rank stops together, or the others hang in the next all-reduce
            finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return
        value = loss.detach().float().cpu().item() if loss.numel() == 1 else math.nan
        value = value if not math.isfinite(value) else "NaN/Inf on another rank"
        checkpoint = getattr(trainer.checkpoint_callback, "last_model_path", "") or ""
        if checkpoint and Path(checkpoint).is_file():
            saved = getattr(trainer.checkpoint_callback, "_last_global_step_saved", None)
            last_good = f"last good checkpoint: {checkpoint} (step {saved})"
        else:
            last_good = "no checkpoint had been saved yet"
        raise NonFiniteLoss(
            f"loss is {value} at training step {trainer.global_step}: training stopped, nothing exported; "
            f"{last_good}. Lower optim.lr or the loss weights, then resume=true continues from the checkpoint"
        )


class RefuseNonFiniteWeights(Callback):
    """No file is exported from weights holding NaN/Inf (runs before ExportStyle's ``on_fit_end``)."""

    def on_fit_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        bad = [name for name, p in module.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise NonFiniteLoss(f"weights {bad[:3]} hold NaN/Inf after step {trainer.global_step}: nothing exported")


class ReportSkippedImages(Callback):
    """Unreadable training images: a log line every ``every`` skips, totals in the logger and at the end.

    Counts come from ``datamodule.skipped`` (a ``fststyle.train.data.SkipCounter`` shared with the workers).
    """

    def __init__(self, every: int = 100):
        self.every = every
        self.reported = 0

    @staticmethod
    def counter(trainer: pl.Trainer):
        return getattr(trainer.datamodule, "skipped", None)

    @staticmethod
    def describe(totals: dict[str, int]) -> str:
        reasons = ", ".join(f"{k}: {v}" for k, v in totals.items() if k not in ("decoded", "skipped"))
        return f"{totals['skipped']} unreadable image(s) skipped, {totals['decoded']} decoded" + (
            f" ({reasons})" if reasons else ""
        )

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        counter = self.counter(trainer)
        if counter is None:
            return
        totals = counter.totals()
        module.log("data/skipped_images", float(totals["skipped"]), on_step=True, on_epoch=False)
        if totals["skipped"] // self.every > self.reported // self.every:
            log.warning("data: %s so far", self.describe(totals))
        self.reported = totals["skipped"]

    def report(self, trainer: pl.Trainer) -> None:
        counter = self.counter(trainer)
        if counter is None:
            return
        totals = counter.totals()
        if trainer.is_global_zero and (totals["decoded"] or totals["skipped"]):
            if totals["skipped"]:  # a clean folder says nothing; its counts still go to the logger
                log.warning("data: %s in total", self.describe(totals))
            metrics = {f"data/{k.split(' (')[0].replace(' ', '_')}": float(v) for k, v in totals.items()}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.report(trainer)

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        self.report(trainer)
