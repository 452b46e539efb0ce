"""Deployment formats: ONNX (dynamic batch/height/width) and TorchScript, and running ONNX on the CPU
with OpenVINO or onnxruntime.

Both runtimes start in a fraction of PyTorch's import time, and OpenVINO runs the network
fastest of all the CPU paths we measured (bench/infer_speed.py), so ``infer.py`` uses them on
CPUs: the ONNX graph of a style file is exported once into
``<cache>/onnx/<sha256 of the style file>-g<GRAPH>.onnx`` and reused. The exported graph is the
network's exact faster form (:mod:`fststyle.infer.rewrite`). This module imports torch only when it
has to export.

A multi-style file's graph has one style (or blend) baked in, one cached graph per choice: it is then
the very graph of a one-style network (same rewrite, same speed, nothing extra to feed), and a new
choice costs one export of a few seconds instead of a style input on every run.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from fststyle.atomic import atomic_path
from fststyle.cache import cache_dir, sha256_of
from fststyle.errors import UserError
from fststyle.infer.color import finish

# ONNX outputs (onnxruntime and OpenVINO, fp32) match PyTorch fp32 within this (max abs, on [0, 1] pixels): tests/test_infer.py
ONNX_TOLERANCE = 1e-4
OPSET = 17
GRAPH = 2  # bump when the exported graph changes, so cached graphs of older versions are not reused


def _aligned(ckpt: str | Path, style: str | dict | None = None):
    from fststyle.infer.rewrite import faster_equivalent
    from fststyle.infer.stylizer import AlignedTransformer
    from fststyle.stylefile import load_transformer

    net, meta = load_transformer(ckpt, style)
    return AlignedTransformer(faster_equivalent(net)).eval(), meta


def export_onnx(ckpt: str | Path, path: str | Path, style: str | dict | None = None) -> Path:
    """The network of ``ckpt`` as ONNX: input ``image`` (N, 3, H, W) RGB in [0, 1], any N, H, W; output ``stylized``.

    ``style``: the style (or {name: weight} blend) of a multi-style file to bake in.
    """
    import torch

    model, meta = _aligned(ckpt, style)
    path = Path(path)
    axes = {0: "batch", 2: "height", 3: "width"}
    import warnings

    import onnx

    with atomic_path(path) as tmp:  # a unique temp name: processes exporting the same style at once never collide
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic: traced dynamically, checked by tests
            torch.onnx.export(
                model, (torch.rand(1, 3, 64, 64),), str(tmp), input_names=["image"], output_names=["stylized"],
                dynamic_axes={"image": axes, "stylized": axes}, opset_version=OPSET, dynamo=False,
            )
        graph = onnx.load(str(tmp))
        for key in ("style", "format", "fststyle_version"):
            if getattr(meta, key):
                graph.metadata_props.add(key=key, value=str(getattr(meta, key)))
        onnx.save(graph, str(tmp))
    return path


def export_torchscript(ckpt: str | Path, path: str | Path, style: str | dict | None = None) -> Path:
    """The network of ``ckpt`` as scripted TorchScript (any N, H, W): ``torch.jit.load(path)(images)``."""
    import torch

    model, _ = _aligned(ckpt, style)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.jit.script(model).save(str(tmp))
    return path


def cached_onnx(ckpt: str | Path, style: str | dict | None = None) -> Path:
    """The ONNX graph of ``ckpt`` (with ``style`` baked in, for a multi-style file), exported on first use
    (needs PyTorch once, a few seconds)."""
    ckpt = Path(ckpt).expanduser()
    if not ckpt.is_file():
        raise UserError(f"ckpt: no such file {str(ckpt)!r}")
    if ckpt.suffix == ".onnx":
        why = graph_problem(ckpt)
        if why:
            raise UserError(f"{ckpt}: {why}; export a style with infer.py ckpt=STYLE export=onnx output=FILE.onnx")
        return ckpt
    choice = "" if style is None else "-" + hashlib.sha256(json.dumps(style, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "onnx" / f"{sha256_of(ckpt)}{choice}-g{GRAPH}.onnx"
    if path.is_file():
        why = graph_problem(path)
        if not why:
            return path
        print(f"warning: the cached graph {path} is broken ({why}): rebuilding it", file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(ckpt, path, style)
    return path


def graph_problem(path: Path) -> str | None:
    """Why an ONNX file is not an fststyle network (input ``image`` (N, 3, H, W), output ``stylized`` with 3
    channels), or None; read with the onnx package, no runtime, no torch."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf decode errors come in several classes
        return f"not a loadable ONNX model ({str(e).strip().splitlines()[0][:120] if str(e).strip() else e.__class__.__name__})"
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]

    def channels(value) -> int | None:
        dims = value.type.tensor_type.shape.dim
        return dims[1].dim_value if len(dims) == 4 and dims[1].HasField("dim_value") else None

    if [i.name for i in inputs] != ["image"] or channels(inputs[0]) != 3:
        return f"an ONNX model, but not an fststyle network: its input is {[(i.name, channels(i)) for i in inputs]}, not image with 3 channels"
    if [o.name for o in graph.output] != ["stylized"] or channels(graph.output[0]) not in (3, None):
        return f"an ONNX model, but not an fststyle network: its output is {[(o.name, channels(o)) for o in graph.output]}"
    return None


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class _GraphStylizer:
    """What both ONNX runtimes share: a style file's cached graph in, [0, 1] pixels out, colour and strength applied."""

    def __init__(self, preserve_color: bool, strength: float):
        if not 0 <= strength <= 1:
            raise UserError(f"strength must be between 0 and 1, got {strength}")
        self.preserve_color, self.strength = preserve_color, strength

    @classmethod
    def from_checkpoint(cls, ckpt: str | Path, style: str | dict | None = None, **options):
        return cls(cached_onnx(ckpt, style), **options)

    def run(self, images):
        raise NotImplementedError

    def __call__(self, images):
        """(N, 3, H, W) float32 numpy arrays in [0, 1] -> the same shape."""
        import numpy as np

        images = np.ascontiguousarray(images, dtype=np.float32)
        out = finish(self.run(images), images, self.preserve_color, self.strength)
        return np.clip(out, 0, 1, out=out)  # in place: a 4K frame is 100 MB per float copy


class OnnxStylizer(_GraphStylizer):
    """Stylize with onnxruntime on the CPU (no torch needed)."""

    def __init__(self, onnx_path: str | Path, preserve_color: bool = False, strength: float = 1.0, threads: int = 0):
        super().__init__(preserve_color, strength)
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("backend=onnxruntime needs onnxruntime: pip install 'fststyle[onnx]'") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: one per physical core
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception classes
            raise UserError(f"{onnx_path}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None

    def run(self, images):
        return self.session.run(None, {"image": images})[0]


# precision= of infer.py as OpenVINO's inference precision hint (its own default is bf16 where the CPU has AMX)


class _SignalStack:
    """The calling thread's alternate signal stack, kept across OpenVINO's compile.

    OpenVINO's CPU plugin swaps in a signal stack of its own for each compiled model (room for AMX state) and puts
    back the one it found when that model is freed (openvinotoolkit/openvino#11894). Freed out of order (a video's
    oldest shape dropped, two styles loaded), the thread is left on a stack already unmapped, and the next signal,
    a child process exiting, crashes the process. With the thread's own stack put back after every compile, each
    model finds and restores that one.
    """

    def __enter__(self):
        import ctypes

        class Stack(ctypes.Structure):
            _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]

        try:
            self.sigaltstack = ctypes.CDLL(None).sigaltstack
        except (OSError, AttributeError):  # not Linux/Unix
            self.sigaltstack = None
            return self
        self.saved = Stack()
        if self.sigaltstack(None, ctypes.byref(self.saved)) != 0:
            self.sigaltstack = None
        return self

    def __exit__(self, *exc):
        import ctypes

        if self.sigaltstack is not None:
            self.sigaltstack(ctypes.byref(self.saved), None)


def compile_for_cpu(core, model, config: dict):
    """An infer request of ``model`` (a path or an ``ov.Model``) compiled for the CPU, the signal stack kept."""
    with _SignalStack():
        return core.compile_model(model, "CPU", config).create_infer_request()


class OpenVinoStylizer(_GraphStylizer):
    """Stylize with OpenVINO on the CPU (no torch needed): one compiled model for every image size, fp32 unless asked.

    A shape seen a second time (a video's frames, a camera's photos) gets a model compiled for it alone, which
    plans its memory once and drops the graph's shape arithmetic (docs/BENCHMARKS.md, video); above
    ``STATIC_MAX_PIXELS`` the one shared model is kept, so a 4K image never holds two sets of buffers.
    """

    STATIC_MAX_PIXELS = 1920 * 1080
    STATIC_SHAPES = 4  # compiled shapes kept at once

    def __init__(self, onnx_path: str | Path, preserve_color: bool = False, strength: float = 1.0, precision: str = "fp32"):
        super().__init__(preserve_color, strength)
        try:
            import openvino as ov
        except ImportError:
            raise UserError("backend=openvino needs OpenVINO: pip install 'fststyle[openvino]'") from None
        from fststyle.hardware import OPENVINO_PRECISION, check_precision

        check_precision(precision, OPENVINO_PRECISION)
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[precision]}
        core = ov.Core()
        compiled = cache_dir() / "openvino"  # compiled models: 0.05 s to load instead of 0.25 s to compile
        try:
            compiled.mkdir(parents=True, exist_ok=True)
            if os.access(compiled, os.W_OK):
                core.set_property({"CACHE_DIR": str(compiled)})
        except OSError:
            pass  # a read-only home: compile every time
        self.core, self.config, self.onnx_path = core, config, str(onnx_path)
        try:
            self.request = compile_for_cpu(core, self.onnx_path, config)
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError for every kind of bad model
            raise UserError(f"{onnx_path}: not a loadable ONNX model ({str(e).strip().splitlines()[0][:200]})") from None
        self.seen: set[tuple[int, ...]] = set()
        self.static: dict[tuple[int, ...], object] = {}

    def request_for(self, shape: tuple[int, ...]):
        if shape in self.static:
            return self.static[shape]
        if shape not in self.seen or shape[0] * shape[2] * shape[3] > self.STATIC_MAX_PIXELS:
            self.seen.add(shape)
            return self.request
        if len(self.static) >= self.STATIC_SHAPES:
            self.static.pop(next(iter(self.static)))
        model = self.core.read_model(self.onnx_path)
        model.reshape(list(shape))
        self.static[shape] = compile_for_cpu(self.core, model, self.config)
        return self.static[shape]

    def run(self, images):
        # the input read in place; the output copied
        return self.request_for(tuple(images.shape)).infer({0: images}, share_inputs=True)[0]
