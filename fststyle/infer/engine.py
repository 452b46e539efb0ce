"""What ``infer.py`` runs and the thing that runs it: typed settings, the plan (backend, precision, tiling)
chosen from them, and the engine that maps uint8 batches through that plan.

The CPU path runs the network's ONNX graph with OpenVINO (or onnxruntime) and never imports PyTorch
(seconds of import time on a small CPU); PyTorch is loaded only for GPUs, tiles, exports, and the first
use of a style file (to export its graph).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fststyle.errors import UserError
from fststyle.hardware import PRECISIONS, resolve_precision
from fststyle.infer import MIN_SIZE

EXPORTS = {"onnx": ".onnx", "torchscript": ".pt"}
BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
RUNTIMES = ("openvino", "onnxruntime")  # ONNX runtimes on the CPU, fastest first (bench/infer_speed.py)
DEVICES = ("auto", "cpu", "cuda", "mps")
TILE_STATS = ("exact", "downscaled")
# tile=auto: (largest pixel count stylized whole, piece side). Pieces cost more compute than one pass, so only
# images too big for memory go in pieces: OpenVINO runs a 4K frame whole in bf16 within 2 GB, in fp32 it needs
# more and PyTorch's bands take less (docs/BENCHMARKS.md); PyTorch on the CPU goes in bands above 4 MP.
TILE_AUTO = {"cuda": (4096 * 4096, 4096), "openvino": (4096 * 2304, 512), "other": (2048 * 2048, 512)}


@dataclass(frozen=True)
class InferSettings:
    """One ``infer.py`` run, checked once: every bad value is one ``UserError`` before any work."""

    method: str = "fast"
    ckpt: str | None = None
    input: str | None = None
    output: str | None = None
    style: str | None = None  # the style of a multi-style file, when the command line chose one
    style_mix: dict | None = None
    size: int | None = None
    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"
    batch_size: int = 1
    tile: int | str | None = "auto"
    overlap: int = 128
    tile_stats: str = "exact"
    preserve_color: bool = False
    strength: float = 1.0
    export: str | None = None
    overwrite: bool = False

    def __post_init__(self):
        if self.method not in ("fast", "optimize"):
            raise UserError(f"method must be 'fast' (a trained style file, ckpt=) or 'optimize' (Gatys), got {self.method!r}")
        if self.backend not in BACKENDS:
            raise UserError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise UserError(f"device must be auto, cpu, cuda or mps, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.backend == "onnxruntime" and (self.precision not in ("auto", "fp32") or self.device not in ("auto", "cpu")):
            raise UserError("backend=onnxruntime runs fp32 on the CPU: use precision=fp32 device=cpu, or backend=torch")
        if self.backend == "openvino" and self.device not in ("auto", "cpu"):
            raise UserError("backend=openvino runs on the CPU: use device=cpu, or backend=torch")
        if self.tile is not None and self.tile != "auto" and (not isinstance(self.tile, int) or isinstance(self.tile, bool) or self.tile < 64):
            raise UserError(f"tile must be auto, null or a number of pixels >= 64, got {self.tile!r}")
        if self.tile_stats not in TILE_STATS:
            raise UserError(f"tile_stats must be exact or downscaled, got {self.tile_stats!r}")
        if self.export is not None and self.export not in EXPORTS:
            raise UserError(f"export must be onnx or torchscript, got {self.export!r}")


def _gpu_likely() -> bool:
    """Whether device=auto could find a GPU, without importing torch to ask (an NVIDIA driver, or Apple silicon)."""
    import platform
    import sys

    return os.path.exists("/proc/driver/nvidia/version") or (sys.platform == "darwin" and platform.machine() == "arm64")


def _torch_device_type(device: str) -> str:
    from fststyle.hardware import resolve_device

    return resolve_device(device).type


@dataclass(frozen=True)
class Plan:
    """What runs: the backend, its precision, and which images go in tiles of which side."""

    backend: str
    precision: str
    whole_pixels: int | None  # tile=auto: images up to this many pixels in one piece
    tile: int | None  # the tile side; None: never tiled

    def tiled(self, height: int, width: int) -> bool:
        if self.tile is None:
            return False
        if self.whole_pixels is not None:
            return height * width > self.whole_pixels
        return max(height, width) > self.tile


def plan(settings: InferSettings) -> Plan:
    """``backend=auto``: an ONNX runtime on the CPU (OpenVINO, else onnxruntime in fp32: faster there, and no
    PyTorch import), PyTorch otherwise. ``tile=auto``: up to 4096x2304 whole with OpenVINO in bf16 (4K), 4 MP on the
    CPU otherwise, 16 MP on CUDA; larger in pieces (exact bands for Johnson's network)."""
    backend, device = settings.backend, settings.device
    on_cpu = device == "cpu" or (device == "auto" and not _gpu_likely()) or backend in RUNTIMES
    device_type = "cpu" if on_cpu else _torch_device_type(device)  # asked once: it imports torch
    if backend == "onnxruntime":
        precision = "fp32"
    else:
        precision = resolve_precision(settings.precision, device_type)
    if backend == "auto":
        from fststyle.infer.deploy import installed

        usable = [r for r in RUNTIMES if installed(r) and (r == "openvino" or precision == "fp32")] if on_cpu else []
        backend = usable[0] if usable else "torch"
    if settings.tile is None:
        whole, tile = None, None
    elif settings.tile == "auto":
        if backend == "torch" and device_type == "cuda":
            kind = "cuda"
        else:  # fp32 activations are twice bf16's: a 4K pass in OpenVINO then takes more memory than the bands
            kind = "openvino" if backend == "openvino" and precision != "fp32" else "other"
        whole, tile = TILE_AUTO[kind]
    else:
        whole, tile = None, settings.tile
    return Plan(backend, precision, whole, tile)


class Engine:
    """The network of ``ckpt`` behind the planned backend: ``engine(batch)`` maps (N, H, W, 3) uint8 to the same.

    Images too large to go whole always go through PyTorch's pieces (fststyle.infer.tiling). The style file is loaded at construction, so
    a bad one is reported before any input is read.
    """

    def __init__(self, settings: InferSettings, ckpt: Path, style: str | dict | None = None):
        self.settings, self.ckpt, self.style = settings, ckpt, style  # style: of a multi-style file
        self.plan = plan(settings)
        self._runtime = self._torch = None
        self.runtime() if self.backend in RUNTIMES else self.torch()

    @property
    def backend(self) -> str:
        return self.plan.backend

    @property
    def precision(self) -> str:
        return self.plan.precision

    @property
    def tile(self) -> int | None:
        return self.plan.tile

    def tiled(self, height: int, width: int) -> bool:
        return self.plan.tiled(height, width)

    def runtime(self):
        if self._runtime is None:
            from fststyle.infer.deploy import OnnxStylizer, OpenVinoStylizer

            options = {"preserve_color": self.settings.preserve_color, "strength": self.settings.strength}
            if self.backend == "openvino":
                self._runtime = OpenVinoStylizer.from_checkpoint(self.ckpt, self.style, precision=self.precision, **options)
            else:
                self._runtime = OnnxStylizer.from_checkpoint(self.ckpt, self.style, **options)
        return self._runtime

    def torch(self):
        if self._torch is None:
            from fststyle.infer.stylizer import Stylizer

            s = self.settings
            self._torch = Stylizer.from_checkpoint(
                self.ckpt, device=s.device, style=self.style, precision=self.precision, tile=self.tile, overlap=s.overlap,
                tile_stats=s.tile_stats, preserve_color=s.preserve_color, strength=s.strength,
            )
        return self._torch

    def __call__(self, batch):
        """(N, H, W, 3) uint8 -> the same, stylized."""
        import numpy as np

        h, w = batch.shape[1:3]
        if min(h, w) < MIN_SIZE:
            grow = ((0, 0), (0, max(0, MIN_SIZE - h)), (0, max(0, MIN_SIZE - w)), (0, 0))
            return self(np.pad(batch, grow, mode="edge"))[:, :h, :w]
        tiled = self.tiled(*batch.shape[1:3])
        if self.backend in RUNTIMES and not tiled:
            images = np.empty((batch.shape[0], 3, *batch.shape[1:3]), np.float32)  # NCHW in one pass over the frame
            np.multiply(batch.transpose(0, 3, 1, 2), np.float32(1 / 255), out=images)
            out = self.runtime()(images)
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
