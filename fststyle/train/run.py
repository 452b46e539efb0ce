"""Build everything from the Hydra config and run Lightning's fit; export the style at the end."""
from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ProgressBar
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from fststyle.cache import sha256_of
from fststyle.config import expand_styles
from fststyle.errors import UserError, boolean, number, whole_number
from fststyle.hardware import LIGHTNING_PRECISION, machine_summary, resolve_precision
from fststyle.memory import keep_freed_memory
from fststyle.nets.transformer import TransformerConfig
from fststyle.style import absolute_image, checksum_for, resolve_image
from fststyle.stylefile import (
    ARCHITECTURE_BOUNDS,
    check_replaceable,
    check_resumable,
    export_transformer,
    load_network,
    raw_header,
)
from fststyle.train.distributed import check_launch, scaled_optim
from fststyle.train.module import StyleTransferModule
from fststyle.train.safety import (
    EXIT_PREEMPTED,
    AtomicCheckpointIO,
    RunLock,
    cluster_plugins,
    latest_checkpoint,
    usable_checkpoint,
)
from fststyle.zoo import recipe, resolve_model

log = logging.getLogger(__name__)


class ExportStyle(Callback):
    """Write ``<export_dir>/<style>.safetensors`` once fit ends normally (rank 0 only).

    ``on_fit_end`` rather than ``on_train_end``: a run resumed from a checkpoint taken at its last step
    (preempted right at the end) trains no step, so only ``on_fit_end`` is called, and it must still export.
    """

    def __init__(self, export_dir: str | Path, config: dict, style_sha256: str = "", log_model: bool = False):
        self.export_dir, self.config, self.style_sha256 = Path(export_dir), config, style_sha256
        self.log_model = log_model  # also to wandb, as a model artifact, with the final sample grid
        self.path: Path | None = None
        self.started, self.first_step = 0.0, 0

    def on_fit_start(self, trainer: pl.Trainer, module: StyleTransferModule) -> None:
        self.started = time.time()

    def on_train_start(self, trainer: pl.Trainer, module: StyleTransferModule) -> None:
        self.first_step = trainer.global_step  # > 0 when resumed

    def training_record(self, trainer: pl.Trainer) -> dict:
        """How this network was made, in the export's metadata (``python infer.py ckpt=list`` shows it)."""
        data = self.config.get("data", {})
        batch = int(data.get("batch_size", 0)) * trainer.world_size
        return {
            "steps": trainer.global_step,
            "images_seen": trainer.global_step * batch,
            "batch": batch,
            "image_size": data.get("image_size"),
            "data": data.get("path") or data.get("name"),
            "precision": str(trainer.precision),
            "machine": machine_summary(str(trainer.strategy.root_device)),
            "devices": trainer.world_size,
            "wall_time_s": round(time.time() - self.started),
            "resumed_at_step": self.first_step or None,
            "finished": time.strftime("%Y-%m-%d"),
        }

    def on_save_checkpoint(self, trainer: pl.Trainer, module: StyleTransferModule, checkpoint: dict) -> None:
        checkpoint["training_record"] = self.training_record(trainer)  # what an export of this checkpoint says

    def on_fit_end(self, trainer: pl.Trainer, module: StyleTransferModule) -> None:
        if trainer.is_global_zero:
            self.path = export_transformer(
                module.transformer, self.export_dir / f"{module.style['name']}.safetensors",
                {**module.style, "sha256": self.style_sha256}, self.config, training=self.training_record(trainer),
            )
            module.final_samples()  # the finished network's grid, whatever the sampling interval
            if self.log_model and isinstance(trainer.logger, WandbLogger):
                log_artifact(trainer.logger, self.path, module.style["name"])


def resume_checkpoint(cfg: DictConfig, checkpoint_dir: Path) -> str | None:
    """``ckpt_path=FILE`` wins; else ``resume=true`` continues ``last.ckpt`` of this run dir if there is one."""
    if cfg.ckpt_path:
        if not Path(cfg.ckpt_path).is_file():
            raise UserError(f"ckpt_path: no such file {cfg.ckpt_path!r}")
        return str(cfg.ckpt_path)
    last = latest_checkpoint(Path(cfg.run_dir), checkpoint_dir)
    if last is not None:
        if cfg.resume:
            log.info("resuming from %s", last)
            return str(last)
        raise UserError(
            f"{checkpoint_dir} already holds a run of this style: resume=true continues it, "
            "or pick a fresh folder with run_dir=DIR (nothing was overwritten)"
        )
    return None


def log_artifact(logger: WandbLogger, path: Path, name: str) -> None:
    """The exported style file as a wandb model artifact named after the style, its metadata attached."""
    import wandb

    artifact = wandb.Artifact(name=name, type="model", metadata=raw_header(path))
    artifact.add_file(str(path))
    logger.experiment.log_artifact(artifact)


def build_logger(cfg: DictConfig):
    """The configured Lightning logger. ``logger.log_model`` is fststyle's (the export as an artifact), so
    Lightning's own checkpoint upload stays off."""
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return False
    options = {"log_model": False} if "log_model" in cfg.logger else {}
    if str(cfg.logger._target_).endswith("WandbLogger") and wandb_needs_offline(os.environ):
        options["offline"] = True
        where = Path(str(cfg.logger.get("save_dir") or ".")) / "wandb"
        print(f"wandb: no account configured here (wandb login, or WANDB_API_KEY): logging offline to {where}; "
              f"upload it later with: wandb sync {where}/offline-run-*", flush=True)
        import wandb

        options["settings"] = wandb.Settings(silent=True)  # the line above says what its banner would
    logger = instantiate(cfg.logger, **options)
    if getattr(logger, "_wandb_init", {}).get("anonymous", False) is None:
        del logger._wandb_init["anonymous"]  # Lightning passes None, which wandb warns about as a setting in use
    return logger


def wandb_needs_offline(env) -> bool:
    """Whether a wandb run would fail for want of credentials: no WANDB_MODE chosen, no API key, no netrc entry."""
    if env.get("WANDB_MODE") or env.get("WANDB_API_KEY"):
        return False
    import netrc
    from urllib.parse import urlparse

    host = urlparse(env.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return netrc.netrc(env.get("NETRC")).authenticators(host) is None
    except (OSError, netrc.NetrcParseError):
        return True


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """The ``callbacks`` group's entries in order (conf/callbacks/default.yaml, plus ``+callbacks.NAME`` ones);
    no progress bar with ``trainer.enable_progress_bar=false``."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    if cfg.trainer.get("enable_progress_bar", True) is False:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def sample_interval(max_steps: int, sample_every: int) -> int:
    """Steps between sample grids (and validation distances): ``sample_every``, or a quarter of a shorter run."""
    if max_steps and max_steps > 0:
        return max(1, min(sample_every, max_steps // 4))
    return sample_every


def validation_interval(cfg: DictConfig):
    """``trainer.val_check_interval`` as given, or (by default, from ``sample_every``) fitted to short runs."""
    if OmegaConf.is_interpolation(cfg.trainer, "val_check_interval"):
        return sample_interval(int(cfg.trainer.max_steps), int(cfg.trainer.val_check_interval))
    return cfg.trainer.val_check_interval


QUIET = (  # Lightning's info lines that say nothing the run's own lines and bar do not
    "💡 Tip", "`Trainer(limit_val_batches=1)`", "`Trainer(val_check_interval=", "GPU available: False",
    "TPU available:", "Using bfloat16 Automatic", "Using 16bit Automatic", "`Trainer.fit` stopped:",
)


def quiet_lightning() -> None:
    """Lightning's noise silenced where it is made: an advert, notes on our own settings, a warning that does not
    apply to step-counted runs, and a deprecation inside Lightning itself (its pytree helper under newer torch)."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # an epoch here is one pass over a folder, often shorter than the logging interval; logging counts steps
    warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging")
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(getattr(f, "fststyle", False) for f in logger.filters):
        def drop(record: logging.LogRecord) -> bool:
            return not str(record.getMessage()).startswith(QUIET)

        drop.fststyle = True
        logger.addFilter(drop)


def trainer_precision(cfg: DictConfig) -> str:
    """Lightning's precision: ``trainer.precision`` when set, else what ``precision=`` (auto) stands for here."""
    if cfg.trainer.get("precision") is not None:
        return str(cfg.trainer.precision)
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("auto", "gpu"):
        import torch

        accelerator = "cuda" if torch.cuda.is_available() else "cpu" if accelerator == "auto" else accelerator
    return LIGHTNING_PRECISION[resolve_precision(str(cfg.get("precision", "auto")), accelerator)]


def style_digest(style: dict) -> tuple[str, str]:
    """(sha256, description) of the style picture(s) an export is made from; a multi-style file's digest covers
    every style in order (one recorded in an init_from file is taken from there)."""
    if not style.get("styles"):
        return sha256_of(resolve_image(style["image"], checksum_for(style))), str(style["image"])
    trained = set(style.get("train") or [s["name"] for s in style["styles"]])
    for entry in style["styles"]:
        if entry["name"] in trained or not entry.get("sha256"):
            entry["sha256"] = sha256_of(resolve_image(entry["image"], checksum_for(entry)))
    digest = hashlib.sha256("\n".join(f"{s['name']}:{s['sha256']}" for s in style["styles"]).encode()).hexdigest()
    return digest, "styles " + ", ".join(s["name"] for s in style["styles"])


def add_to(base, style: dict) -> dict:
    """``init_from=FILE``: the file's styles first (their norm tables kept), then the new names; only ``style.names`` train."""
    net, meta = base
    known = meta.styles
    if not known:  # a one-style file: its style is row 0
        known = [{"name": meta.style or "style", "image": meta.style_image, "sha256": meta.style_sha256}]
    names = [s["name"] for s in known]
    fresh = [s for s in style["styles"] if s["name"] not in names]
    return {**style, "styles": known + fresh, "train": [s["name"] for s in style["styles"]]}


def fine_tune_base(spec: str, model: dict):
    """``init_from=FILE_OR_NAME`` for one style: every weight of a trained one-style network trains on from where
    it is, under this run's recipe (a shipped style retrained with a new loss term, say)."""
    net, meta = load_network(resolve_model(spec)[0])
    if net.config.styles != 1:
        raise UserError(f"init_from={spec}: a multi-style network; add styles to it with style=multi style.names=[NEW,...]")
    have, wanted = vars(net.config), vars(TransformerConfig(**{**model, "styles": 1}))  # what this run builds
    differ = sorted(k for k in wanted if have[k] != wanted[k])
    if differ:
        raise UserError(f"init_from={spec}: its network differs from model= in {', '.join(differ)}")
    return net, meta


def start_from(transformer, base) -> None:
    """Copy ``base``'s shared weights and its styles' norm rows; a new style's rows start at the mean of the old ones."""
    import torch

    state = transformer.state_dict()
    for key, value in base.state_dict().items():
        if state[key].shape == value.shape:
            state[key] = value
        else:  # a norm table: (styles, C) here, (C,) or (old styles, C) there
            old = value.reshape(-1, value.shape[-1])
            state[key] = torch.cat([old, old.mean(0, keepdim=True).expand(len(state[key]) - len(old), -1)])
    transformer.load_state_dict(state)


def is_multirun() -> bool:
    """Whether Hydra runs this job as one of a sweep (``-m``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def remove_failed_start() -> None:
    """A run refused before it trained leaves no folder behind: Hydra's output dir is removed when it holds only
    what Hydra itself wrote there (.hydra/ and the job's log)."""
    import shutil

    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    folder = Path(hydra.runtime.output_dir)
    own = {".hydra", f"{hydra.job.name}.log"}
    if folder.is_dir() and {p.name for p in folder.iterdir()} <= own:
        shutil.rmtree(folder, ignore_errors=True)
        parent = folder.parent
        if parent.name in ("outputs", "multirun") and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def check_values(config: dict) -> None:
    """The numbers a training run is built from, each checked before anything loads: one error line per bad value."""
    data, style, loss, optim = config["data"], config["style"], config["loss"], config["optim"]
    whole_number("data.image_size", data.get("image_size"), 32)
    whole_number("data.batch_size", data.get("batch_size"), 1)
    if "num_workers" in data:
        whole_number("data.num_workers", data["num_workers"], 0)
    whole_number("style.size", style.get("size"), 16, allow_none=True)
    if style.get("weight") is not None or style.get("names") is None:  # style=multi: null = each style's own
        number("style.weight", style.get("weight"), 0, math.inf)
    for name, scale in (style.get("layers") or {}).items():
        number(f"style.layers.{name}", scale, 0, math.inf)
    for key in ("content_weight", "tv_weight", "stability_weight", "distill_weight", "lattice_weight", "coarse_style_weight", "ripple_weight", "ripple_margin", "spectrum_weight"):
        if key in loss:
            number(f"loss.{key}", loss[key], 0, math.inf)
    for group in ("content_layers", "style_layers"):
        for name, weight in (loss.get(group) or {}).items():
            number(f"loss.{group}.{name}", weight, 0, math.inf)
    if "ripple_peak" in loss:
        number("loss.ripple_peak", loss["ripple_peak"], 1, math.inf)
    if "phase_jitter" in loss:
        whole_number("loss.phase_jitter", loss["phase_jitter"], 0)
    if "border_reflect" in loss:
        whole_number("loss.border_reflect", loss["border_reflect"], 0)
    if "lattice_taper" in loss:
        boolean("loss.lattice_taper", loss["lattice_taper"])
    if number("optim.lr", optim.get("lr"), 0, math.inf) == 0:
        raise UserError("optim.lr must be > 0, got 0")
    steps = config["trainer"].get("max_steps", -1)
    if steps != -1:
        whole_number("trainer.max_steps", steps, 1)
    whole_number("checkpoint_every", config.get("checkpoint_every"), 1)
    whole_number("seed", config.get("seed"), 0)
    model = config.get("model") or {}
    for key, (low, _) in ARCHITECTURE_BOUNDS.items():  # the bounds a style file's architecture is held to
        if key in model:
            whole_number(f"model.{key}", model[key], low)
    if model.get("end_kernel", 1) % 2 == 0:
        raise UserError(f"model.end_kernel must be odd, got {model['end_kernel']}")
    if "skips" in model:
        boolean("model.skips", model["skips"])
    for key, value in (config.get("speed") or {}).items():
        boolean(f"speed.{key}", value)


def load_teacher(spec: str | None):
    """``teacher=FILE_OR_NAME``: the trained one-style network a lite twin learns from, loaded before training starts,
    and how the export names it: a shipped name as given, a file by its style and file name (not a path on the
    machine that trained it)."""
    if not spec:
        return None, None
    from fststyle.stylefile import load_transformer

    path, label = resolve_model(str(spec))
    net, meta = load_transformer(path)
    return net, label if label == str(spec) else f"{meta.style} ({path.name})"


def train(cfg: DictConfig) -> Path | None:
    """Train one style; returns the exported file."""
    config = OmegaConf.to_container(cfg, resolve=True)
    check_values(config)
    with RunLock(Path(cfg.run_dir)):  # one training per run folder
        return fit(cfg, config)


def fit(cfg: DictConfig, config: dict) -> Path | None:
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = Path(cfg.run_dir)
    checkpoint_dir = run_dir / "checkpoints"
    ckpt_path = resume_checkpoint(cfg, checkpoint_dir)
    if ckpt_path:
        ckpt_path = str(usable_checkpoint(Path(ckpt_path), config["model"], check_resumable))
    teacher, config["teacher"] = load_teacher(cfg.get("teacher"))  # a bad teacher= is refused before the style image is fetched

    if config["style"].get("image"):
        config["style"]["image"] = absolute_image(config["style"]["image"])
    base, multi = None, config["style"].get("names") is not None
    if multi:  # style=multi: many styles in one network
        config["style"] = expand_styles(config["style"])
        if cfg.get("init_from"):
            base = load_network(Path(cfg.init_from).expanduser())
            config["style"] = add_to(base, config["style"])
    elif cfg.get("init_from"):
        base = fine_tune_base(str(cfg.init_from), config["model"])
        # the export records where its weights started (python -m fststyle.zoo prints it)
        config["init_from_record"] = {"recipe": recipe(base[1].config), **{k: base[1].training.get(k) for k in ("steps", "image_size")}}
    style_sha256, style_image = style_digest(config["style"])
    check_replaceable(Path(cfg.export_dir) / f"{config['style']['name']}.safetensors", style_sha256, style_image, cfg.get("overwrite", False))
    datamodule = instantiate(cfg.data)
    module = StyleTransferModule(
        model=config["model"], loss=config["loss"], style=config["style"], optim=config["optim"], config=config,
        speed=config.get("speed"), norms_only=base is not None and multi, teacher=teacher,
    )
    if base is not None and not ckpt_path:
        start_from(module.transformer, base[0])
    if module.speed["keep_freed_memory"]:
        keep_freed_memory()
    export = ExportStyle(cfg.export_dir, config, style_sha256, log_model=bool((cfg.get("logger") or {}).get("log_model", False)))
    quiet_lightning()
    trainer = instantiate(
        cfg.trainer,
        val_check_interval=validation_interval(cfg),
        precision=trainer_precision(cfg),
        default_root_dir=str(run_dir),
        logger=build_logger(cfg),
        callbacks=[*build_callbacks(cfg), export],  # the export last: RefuseNonFiniteWeights runs before it
        plugins=[AtomicCheckpointIO(), *cluster_plugins(cfg.get("slurm_requeue", True))],
    )
    check_launch(trainer, multirun=is_multirun())
    module.optim = scaled_optim(config["optim"], trainer.world_size)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        raise SystemExit(EXIT_PREEMPTED) from None  # checkpoint saved by CheckpointOnPreemption
    return export.path
