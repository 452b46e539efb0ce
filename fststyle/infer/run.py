"""What ``infer.py`` does with its config: stylize an image, a folder or a video, or export the network.

The CPU path runs the network's ONNX graph with OpenVINO (or onnxruntime) and never imports
PyTorch (2 s of import time on a small CPU); PyTorch is loaded only for GPUs, tiles, exports,
and the first use of a style file (to export its graph).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fststyle.errors import UserError
from fststyle.hardware import PRECISIONS, resolve_precision

EXPORTS = {"onnx": ".onnx", "torchscript": ".pt"}
BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
RUNTIMES = ("openvino", "onnxruntime")  # ONNX runtimes on the CPU, fastest first (bench/infer_speed.py)
# tile=auto: images up to this many pixels in one piece, larger ones in tiles of this side. Tiling with
# exact statistics costs ~5x the compute: a 1080p photo on 2 CPU cores took 138 s in 1024-px tiles,
# 5.5 s whole with OpenVINO (0.93 GB peak RSS); 4K in tiles peaks at 1.5 GB (docs/BENCHMARKS.md)
TILE_AUTO = {"cuda": (4096 * 4096, 4096), "other": (2048 * 2048, 1024)}


def run(cfg: DictConfig) -> Path:
    if cfg.method == "optimize":  # Gatys et al.: optimise the pixels, no trained network
        return run_optimize(cfg)
    if cfg.method != "fast":
        raise UserError(f"method must be 'fast' (a trained style file, ckpt=) or 'optimize' (Gatys), got {cfg.method!r}")
    from fststyle import zoo

    if cfg.ckpt is None:
        raise UserError(
            "method=fast needs ckpt=FILE (an exported .safetensors style or a training .ckpt) "
            f"or a shipped style's name: {', '.join(zoo.names()) or 'none shipped'}"
        )
    if str(cfg.ckpt) == "list":
        zoo.main()
        return Path(zoo.ZOO_DIR)
    ckpt, _ = zoo.resolve_model(str(cfg.ckpt))
    style = style_choice(cfg, ckpt)
    if cfg.get("export"):
        return export(cfg, ckpt, style)

    src, dst = Path(cfg.input).expanduser(), Path(cfg.output).expanduser()
    if not src.exists():
        raise UserError(f"input: no such file or folder {str(src)!r}")
    if src.is_dir():
        jobs = folder_jobs(src, dst)
    else:
        if dst.is_dir():
            dst = dst / src.name
        check_output_format(src, dst)
        jobs = [(src, dst)]
    check_outputs(jobs, dst if src.is_dir() else dst.parent, bool(cfg.overwrite))
    engine = Engine(cfg, ckpt, style)
    return stylize_all(jobs, engine, cfg, show_progress=src.is_dir() or is_video(src))


def style_choice(cfg: DictConfig, ckpt: Path) -> str | dict | None:
    """What a multi-style file paints: ``style_mix=`` (a blend), else ``style=NAME``; None for a one-style file."""
    from fststyle.stylefile import style_names_of

    mix = cfg.get("style_mix")
    names = style_names_of(ckpt) if ckpt.suffix in (".safetensors", ".ckpt") else []
    if not names:
        if mix:
            raise UserError(f"style_mix needs a multi-style file; {ckpt} paints one style")
        return None
    if mix:
        if not OmegaConf.is_dict(mix):
            raise UserError(f'style_mix must be a mapping like "{{{names[0]}: 0.7, {names[-1]}: 0.3}}", got {mix!r}')
        return {str(k): v for k, v in OmegaConf.to_container(mix).items()}
    if not style_given(cfg):
        raise UserError(f"{ckpt.name} carries {len(names)} styles: pick one with style=NAME or blend them with "
                        f'style_mix="{{{names[0]}: 0.5, {names[-1]}: 0.5}}"; its styles: {", ".join(names)}')
    return str(cfg.style.name)


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


class Engine:
    """The network behind one backend: ``engine(batch)`` maps (N, H, W, 3) uint8 to the same.

    ``backend=auto`` picks an ONNX runtime on the CPU (OpenVINO, else onnxruntime in fp32: faster
    here, and no PyTorch import), PyTorch otherwise; images that need tiles (``tiled``) always go
    through PyTorch's tiling.
    """

    def __init__(self, cfg: DictConfig, ckpt: Path, style: str | dict | None = None):
        self.cfg, self.ckpt, self.style = cfg, ckpt, style  # style: of a multi-style file (style_choice)
        backend = cfg.get("backend", "auto")
        if backend not in BACKENDS:
            raise UserError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if cfg.device not in ("auto", "cpu", "cuda", "mps") and not str(cfg.device).startswith("cuda:"):
            raise UserError(f"device must be auto, cpu, cuda or mps, got {cfg.device!r}")
        if not 0 <= float(cfg.strength) <= 1:
            raise UserError(f"strength must be between 0 and 1, got {cfg.strength}")
        if cfg.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
        if backend == "onnxruntime" and (cfg.precision not in ("auto", "fp32") or cfg.device not in ("auto", "cpu")):
            raise UserError("backend=onnxruntime runs fp32 on the CPU: use precision=fp32 device=cpu, or backend=torch")
        if backend == "openvino" and cfg.device not in ("auto", "cpu"):
            raise UserError("backend=openvino runs on the CPU: use device=cpu, or backend=torch")
        on_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not _gpu_likely()) or backend in RUNTIMES
        if backend == "onnxruntime":
            self.precision = "fp32"
        else:
            self.precision = resolve_precision(cfg.precision, "cpu" if on_cpu else _torch_device_type(cfg.device))
        if backend == "auto":
            from fststyle.infer.deploy import installed

            usable = [r for r in RUNTIMES if installed(r) and (r == "openvino" or self.precision == "fp32")] if on_cpu else []
            backend = usable[0] if usable else "torch"
        self.backend = backend
        self.whole_pixels, self.tile = self._resolve_tile(cfg.tile)
        self._runtime = self._torch = None
        # load now: a bad checkpoint is reported before any file is read
        self.runtime() if backend in RUNTIMES else self.torch()

    def _resolve_tile(self, tile) -> tuple[int | None, int | None]:
        """(largest pixel count stylized whole, tile side). ``tile=N``: sides above N are tiled;
        ``tile=auto``: up to 4 MP whole on the CPU (16 MP on a CUDA GPU), larger images in tiles."""
        if tile is None:
            return None, None
        if tile == "auto":
            on_cuda = False
            if self.backend == "torch":
                from fststyle.infer.stylizer import resolve_device

                on_cuda = resolve_device(str(self.cfg.device)).type == "cuda"
            return TILE_AUTO["cuda" if on_cuda else "other"]
        if not isinstance(tile, int) or isinstance(tile, bool) or tile < 64:
            raise UserError(f"tile must be auto, null or a number of pixels >= 64, got {tile!r}")
        return None, tile

    def tiled(self, height: int, width: int) -> bool:
        if self.tile is None:
            return False
        if self.whole_pixels is not None:
            return height * width > self.whole_pixels
        return max(height, width) > self.tile

    def runtime(self):
        if self._runtime is None:
            from fststyle.infer.deploy import OnnxStylizer, OpenVinoStylizer

            cfg = self.cfg
            options = {"preserve_color": cfg.preserve_color, "strength": float(cfg.strength)}
            if self.backend == "openvino":
                self._runtime = OpenVinoStylizer.from_checkpoint(self.ckpt, self.style, precision=self.precision, **options)
            else:
                self._runtime = OnnxStylizer.from_checkpoint(self.ckpt, self.style, **options)
        return self._runtime

    def torch(self):
        if self._torch is None:
            from fststyle.infer.stylizer import Stylizer

            cfg = self.cfg
            self._torch = Stylizer.from_checkpoint(
                self.ckpt, device=cfg.device, style=self.style, precision=self.precision, tile=self.tile, overlap=cfg.overlap,
                tile_stats=cfg.tile_stats, preserve_color=cfg.preserve_color, strength=float(cfg.strength),
            )
        return self._torch

    def __call__(self, batch):
        import numpy as np

        tiled = self.tiled(*batch.shape[1:3])
        if self.backend in RUNTIMES and not tiled:
            out = self.runtime()(batch.transpose(0, 3, 1, 2).astype(np.float32) / 255)
        else:
            import torch

            images = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255)
            del batch
            out = self.torch().stylize_tensor(images, tiled)
            del images
            out = out.numpy()
        out *= 255
        out += 0.5  # round, in place: a 4K frame is 100 MB per float copy
        return out.transpose(0, 2, 3, 1).astype(np.uint8)


def _torch_device_type(device: str) -> str:
    from fststyle.infer.stylizer import resolve_device

    return resolve_device(str(device)).type


def _gpu_likely() -> bool:
    """Whether device=auto could find a GPU, without importing torch to ask (an NVIDIA driver, or Apple silicon)."""
    import platform
    import sys

    return os.path.exists("/proc/driver/nvidia/version") or (sys.platform == "darwin" and platform.machine() == "arm64")


def stylize_all(jobs: list[tuple[Path, Path]], engine: Engine, cfg: DictConfig, show_progress: bool) -> Path:
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
            image = read_array(src, cfg.size)
        except Exception as e:  # noqa: BLE001 - PIL fails on non-images in many ways
            skipped.append((src, f"{e.__class__.__name__}: {str(e)[:100]}"))
            continue
        if batch and (image.shape != batch[0].shape or len(batch) >= cfg.batch_size):
            flush()
        batch.append(image)
        targets.append((src, dst))
    flush()
    for src, dst in videos:
        try:
            frames += stylize_video(src, dst, engine, cfg.batch_size, cfg.size, progress=show_progress)
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
    return Path(cfg.output)


def export(cfg: DictConfig, ckpt: Path, style: str | dict | None = None) -> Path:
    """``export=onnx|torchscript output=FILE``: the network for deployment."""
    from fststyle.infer.deploy import export_onnx, export_torchscript

    if cfg.export not in EXPORTS:
        raise UserError(f"export must be onnx or torchscript, got {cfg.export!r}")
    if OmegaConf.is_missing(cfg, "output") or cfg.output is None:
        raise UserError(f"export={cfg.export} needs output=FILE{EXPORTS[cfg.export]}")
    dst = Path(cfg.output).expanduser()
    if dst.is_dir():
        dst = dst / (ckpt.stem + EXPORTS[cfg.export])
    check_outputs([(ckpt, dst)], dst.parent, bool(cfg.overwrite))
    (export_onnx if cfg.export == "onnx" else export_torchscript)(ckpt, dst, style)
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


def run_optimize(cfg: DictConfig) -> Path:
    """``infer.py method=optimize``: read, optimise, write; every user mistake is caught before the work."""
    from fststyle.gatys import build_gatys_loss, intermediate_path, optimize_image, pick_device
    from fststyle.images import load_image, save_image
    from fststyle.style import checksum_for, resolve_image

    src, dst = Path(cfg.input), Path(cfg.output)
    if src.is_dir():
        raise UserError(f"input: method=optimize stylizes one image, {str(src)!r} is a folder")
    if not src.is_file():
        raise UserError(f"input: no such file {str(src)!r}")
    device = pick_device(str(cfg.get("device", "cpu")))
    settings = settings_from_config(cfg, device.type)
    planned = [dst]
    if settings.save_every:
        planned += [intermediate_path(dst, i) for i in range(settings.save_every, settings.total_iterations + 1, settings.save_every)]
    existing = [str(p) for p in planned if p.exists()]
    if existing and not cfg.get("overwrite", False):
        raise UserError(f"output: {existing[0]!r} exists{' (and more)' if len(existing) > 1 else ''}; pass overwrite=true to replace")
    if src.resolve() in {p.resolve() for p in planned}:
        raise UserError("output: would write over the input image")

    content = load_image(src, cfg.get("size")).to(device)
    style = load_image(resolve_image(cfg.style.image, checksum_for(OmegaConf.to_container(cfg.style, resolve=True)))).to(device)
    loss = build_gatys_loss(OmegaConf.to_container(cfg.loss, resolve=True)).to(device)

    def on_iteration(i: int, image) -> None:
        if settings.save_every and i % settings.save_every == 0:
            save_image(image, intermediate_path(dst, i))

    image, history = optimize_image(loss, content, style, settings, on_iteration)
    save_image(image, dst)
    if history:
        final = ", ".join(f"{k}={v:.4g}" for k, v in history[-1].items())
        print(f"{len(history)} iterations on {loss.network.network}; final loss {final}")
    print(f"wrote {dst}")
    return dst
