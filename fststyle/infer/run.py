"""What ``infer.py`` does with its config: turn it into typed settings once (``infer_settings``), then stylize
an image, a folder or a video, export the network, or run the optimisation method.

The entry layer: the Hydra config stops here. What runs is :mod:`fststyle.infer.engine`.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fststyle.errors import UserError, boolean, number, whole_number
from fststyle.hardware import resolve_precision
from fststyle.infer import MIN_SIZE
from fststyle.infer.engine import EXPORTS, Engine, InferSettings


def infer_settings(cfg: DictConfig) -> InferSettings:
    """The run's typed settings, every value checked: the one place infer.py's config is read."""
    def text(key: str) -> str | None:
        if OmegaConf.is_missing(cfg, key) or cfg.get(key) is None:
            return None
        return str(cfg.get(key))

    mix = cfg.get("style_mix")
    if mix is not None and not OmegaConf.is_dict(mix):
        raise UserError(f'style_mix must be a mapping like "{{starry_night: 0.7, wave: 0.3}}", got {mix!r}')
    tile = cfg.get("tile", "auto")
    return InferSettings(
        method=str(cfg.get("method", "fast")),
        ckpt=text("ckpt"),
        input=text("input"),
        output=text("output"),
        style=str(cfg.style.name) if cfg.get("style") is not None and style_given(cfg) else None,
        style_mix={str(k): v for k, v in OmegaConf.to_container(mix).items()} if mix is not None else None,
        size=whole_number("size", cfg.get("size"), MIN_SIZE, allow_none=True),
        device=str(cfg.get("device", "auto")),
        precision=str(cfg.get("precision", "auto")),
        backend=str(cfg.get("backend", "auto")),
        batch_size=whole_number("batch_size", cfg.get("batch_size", 1), 1),
        tile=tile,
        overlap=whole_number("overlap", cfg.get("overlap", 128), 0),
        tile_stats=str(cfg.get("tile_stats", "exact")),
        preserve_color=boolean("preserve_color", cfg.get("preserve_color", False)),
        strength=number("strength", cfg.get("strength", 1.0), 0, 1),
        export=text("export"),
        overwrite=boolean("overwrite", cfg.get("overwrite", False)),
    )


def run(cfg: DictConfig) -> Path:
    settings = infer_settings(cfg)
    if settings.method == "optimize":  # Gatys et al.: optimise the pixels, no trained network
        return run_optimize(cfg, settings)
    return run_fast(settings)


def run_fast(settings: InferSettings) -> Path:
    from fststyle import zoo

    if settings.ckpt is None:
        raise UserError(
            "method=fast needs ckpt=FILE (an exported .safetensors style or a training .ckpt) "
            f"or a shipped style's name: {', '.join(zoo.names()) or 'none shipped'}"
        )
    if settings.ckpt == "list":
        zoo.main([])
        return Path(zoo.ZOO_DIR)
    ckpt, _ = zoo.resolve_model(settings.ckpt)
    style = style_choice(settings, ckpt)
    if settings.export:
        return export(settings, ckpt, style)
    if settings.input is None:
        raise UserError("input=IMAGE|FOLDER|VIDEO is missing: what to stylize")
    if settings.output is None:
        raise UserError("output=PATH is missing: where to write (an image, a folder, or a video file)")
    src, dst = Path(settings.input).expanduser(), Path(settings.output).expanduser()
    if not src.exists():
        raise UserError(f"input: no such file or folder {str(src)!r}")
    if src.is_dir():
        jobs = folder_jobs(src, dst)
    else:
        if dst.is_dir():
            dst = dst / src.name
        check_output_format(src, dst)
        jobs = [(src, dst)]
    check_outputs(jobs, dst if src.is_dir() else dst.parent, settings.overwrite)
    engine = Engine(settings, ckpt, style)
    return stylize_all(jobs, engine, settings, show_progress=src.is_dir() or is_video(src))


def style_choice(settings: InferSettings, ckpt: Path) -> str | dict | None:
    """What a multi-style file paints: ``style_mix=`` (a blend), else ``style=NAME``; None for a one-style file."""
    from fststyle.stylefile import style_names_of

    mix = settings.style_mix
    names = style_names_of(ckpt) if ckpt.suffix in (".safetensors", ".ckpt") else []
    if not names:
        if mix:
            raise UserError(f"style_mix needs a multi-style file; {ckpt} paints one style")
        return None
    if mix:
        return mix
    if settings.style is None:
        raise UserError(f"{ckpt.name} carries {len(names)} styles: pick one with style=NAME or blend them with "
                        f'style_mix="{{{names[0]}: 0.5, {names[-1]}: 0.5}}"; its styles: {", ".join(names)}')
    return settings.style


def style_given(cfg: DictConfig) -> bool:
    """Whether the command line chose a style (infer.yaml's default style group is there for method=optimize)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return True  # composed in code: the caller's style is meant
    return any(o.split("=", 1)[0].lstrip("+~") in ("style", "style.name") for o in HydraConfig.get().overrides.task)


def is_video(path: Path) -> bool:
    from fststyle.infer.video import is_video as video

    return video(path)


COMMON_IMAGE_SUFFIXES = (".jpg", ".png", ".webp", ".tif", ".bmp")


def check_output_format(src: Path, dst: Path) -> None:
    """One input's output, checked before any work: an image to a format Pillow writes, a video to a video
    file, and a video only where PyAV is installed."""
    import importlib.util

    from fststyle.infer.video import VIDEO_SUFFIXES

    suffix = dst.suffix.lower()
    if is_video(src):
        if importlib.util.find_spec("av") is None:
            raise UserError(f"input={src}: videos need PyAV, not installed here: pip install 'fststyle[video]'")
        if suffix not in VIDEO_SUFFIXES:
            raise UserError(f"output={dst}: a video is written to a video file; allowed: {', '.join(sorted(VIDEO_SUFFIXES))}")
        return
    from PIL import Image

    if Image.registered_extensions().get(suffix) not in Image.SAVE:
        raise UserError(f"output={dst}: {suffix or 'no extension'} is not an image format fststyle can write; "
                        f"allowed: {', '.join(COMMON_IMAGE_SUFFIXES)} and the other formats Pillow writes")


def folder_jobs(src: Path, dst: Path) -> list[tuple[Path, Path]]:
    """Every file under ``src`` (hidden ones excepted), to the same relative name under ``dst``."""
    if dst.resolve().is_relative_to(src.resolve()) and dst.resolve() != src.resolve():
        raise UserError(f"output {str(dst)!r} is inside input {str(src)!r}: a second run would stylize the results")
    files = sorted(p for p in src.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(src).parts))
    if not files:
        raise UserError(f"input: folder {str(src)!r} has no files")
    return [(p, dst / p.relative_to(src)) for p in files]


def check_outputs(jobs: list[tuple[Path, Path]], out_dir: Path, overwrite: bool) -> None:
    """Refuse, before any work, to write over inputs or existing files, or into a folder we cannot write."""
    if not overwrite:
        for src, dst in jobs:
            if dst.exists() and dst.resolve() == src.resolve():
                raise UserError(f"output would overwrite the input {str(src)!r}; pass overwrite=true to replace it")
        existing = [str(dst) for _, dst in jobs if dst.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise UserError(f"output {existing[0]!r}{more} exists; pass overwrite=true to replace it")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise UserError(f"output folder {str(out_dir)!r} is not writable: {e.strerror or e}") from None


def stylize_all(jobs: list[tuple[Path, Path]], engine: Engine, settings: InferSettings, show_progress: bool) -> Path:
    """Images in batches of equal size, videos frame by frame; a one-line summary; unreadable files listed."""
    from tqdm import tqdm

    from fststyle.images import output_exif, read_array, save_image
    from fststyle.infer.video import is_video as video
    from fststyle.infer.video import stylize_video

    start = time.perf_counter()
    images_done, videos_done, frames, skipped = 0, 0, 0, []
    batch: list = []
    targets: list[tuple[Path, Path]] = []

    def flush():
        nonlocal images_done
        if batch:
            import numpy as np

            for image, (src, dst) in zip(engine(np.stack(batch)), targets):
                save_image(image, dst, output_exif(src))
            images_done += len(batch)
            batch.clear()
            targets.clear()

    images = [(s, d) for s, d in jobs if not video(s)]
    videos = [(s, d) for s, d in jobs if video(s)]
    for src, dst in tqdm(images, unit="image", disable=not show_progress or len(images) < 2):
        try:
            image = read_array(src, settings.size)
        except Exception as e:  # noqa: BLE001 - PIL fails on non-images in many ways
            skipped.append((src, f"{e.__class__.__name__}: {str(e)[:100]}"))
            continue
        if batch and (image.shape != batch[0].shape or len(batch) >= settings.batch_size):
            flush()
        batch.append(image)
        targets.append((src, dst))
    flush()
    for src, dst in videos:
        try:
            frames += stylize_video(src, dst, engine, settings.batch_size, settings.size, progress=show_progress)
            videos_done += 1
        except UserError as e:
            if len(jobs) == 1:
                raise
            skipped.append((src, str(e)))
    elapsed = time.perf_counter() - start
    parts = [f"{images_done} image{'s' * (images_done != 1)}"] if images_done or not videos_done else []
    if videos_done:
        parts.append(f"{videos_done} video{'s' * (videos_done != 1)} ({frames} frames)")
    rate = (images_done + frames) / elapsed if elapsed else 0.0
    line = f"stylized {' and '.join(parts)} in {elapsed:.2f} s ({rate:.2f} images/s, {engine.backend})"
    if skipped:
        line += f"; skipped {len(skipped)}: " + ", ".join(str(s) for s, _ in skipped)
    print(line)
    if skipped:
        for src, why in skipped:
            print(f"  skipped {src}: {why}")
        raise UserError(f"{len(skipped)} of {len(jobs)} input files could not be read (listed above)")
    return Path(settings.output)


def export(settings: InferSettings, ckpt: Path, style: str | dict | None = None) -> Path:
    """``export=onnx|torchscript output=FILE``: the network for deployment."""
    from fststyle.infer.deploy import export_onnx, export_torchscript

    if settings.output is None:
        raise UserError(f"export={settings.export} needs output=FILE{EXPORTS[settings.export]}")
    dst = Path(settings.output).expanduser()
    if dst.is_dir():
        dst = dst / (ckpt.stem + EXPORTS[settings.export])
    check_outputs([(ckpt, dst)], dst.parent, settings.overwrite)
    (export_onnx if settings.export == "onnx" else export_torchscript)(ckpt, dst, style)
    print(f"wrote {dst}")
    return dst


def settings_from_config(cfg: DictConfig, device_type: str = "cpu"):
    """The run's ``gatys.OptimizeSettings``: conf/optimize is ``@package _global_``, so its keys are top-level;
    ``precision=auto`` becomes this device's choice (fststyle/hardware.py)."""
    from fststyle.gatys import OptimizeSettings

    plain = OmegaConf.to_container(cfg, resolve=True)
    fields = {k: plain[k] for k in OptimizeSettings.__dataclass_fields__ if k in plain}
    fields["precision"] = resolve_precision(str(fields.get("precision", "fp32")), device_type)
    return OptimizeSettings(**fields)


def run_optimize(cfg: DictConfig, settings: InferSettings | None = None) -> Path:
    """``infer.py method=optimize``: read, optimise, write; every user mistake is caught before the work."""
    from fststyle.gatys import build_gatys_loss, intermediate_path, optimize_image
    from fststyle.hardware import resolve_device
    from fststyle.images import load_image, save_image
    from fststyle.memory import keep_freed_memory
    from fststyle.style import checksum_for, resolve_image

    settings = settings or infer_settings(cfg)
    if settings.input is None or settings.output is None:
        raise UserError("method=optimize needs input=IMAGE and output=IMAGE")
    src, dst = Path(settings.input).expanduser(), Path(settings.output).expanduser()
    if src.is_dir():
        raise UserError(f"input: method=optimize stylizes one image, {str(src)!r} is a folder")
    if not src.is_file():
        raise UserError(f"input: no such file {str(src)!r}")
    device = resolve_device(settings.device)
    optimize = settings_from_config(cfg, device.type)
    planned = [dst]
    if optimize.save_every:
        planned += [intermediate_path(dst, i) for i in range(optimize.save_every, optimize.total_iterations + 1, optimize.save_every)]
    existing = [str(p) for p in planned if p.exists()]
    if existing and not settings.overwrite:
        raise UserError(f"output: {existing[0]!r} exists{' (and more)' if len(existing) > 1 else ''}; pass overwrite=true to replace")
    if src.resolve() in {p.resolve() for p in planned}:
        raise UserError("output: would write over the input image")

    content = load_image(src, settings.size).to(device)
    style = load_image(resolve_image(cfg.style.image, checksum_for(OmegaConf.to_container(cfg.style, resolve=True)))).to(device)
    loss = build_gatys_loss(OmegaConf.to_container(cfg.loss, resolve=True)).to(device)

    def on_iteration(i: int, image) -> None:
        if optimize.save_every and i % optimize.save_every == 0:
            save_image(image, intermediate_path(dst, i))

    keep_freed_memory()  # every L-BFGS iteration frees and allocates the same activations
    image, history = optimize_image(loss, content, style, optimize, on_iteration)
    save_image(image, dst)
    if history:
        final = ", ".join(f"{k}={v:.4g}" for k, v in history[-1].items())
        print(f"{len(history)} iterations on {loss.network.network}; final loss {final}")
    print(f"wrote {dst}")
    return dst
