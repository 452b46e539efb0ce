"""What this machine is, and which precision runs the networks fastest on it (``precision=auto``).

- CUDA: bf16 on GPUs that have bf16 tensor cores (compute capability 8.0+), fp16 on 7.x, else fp32.
- CPU: bf16 with AMX (``amx_bf16``: bf16 convolutions ~6.7x fp32); fp32 without AVX512-BF16. With
  AVX512-BF16 but no AMX the flags do not say: bf16 convolutions ran 2.9x fp32 on an AMD EPYC and
  *slower* than fp32 on an Intel Xeon. There a one-off probe times one convolution both ways and
  the answer is cached per CPU model and torch version (``<cache>/precision-probe.json``).
- Anything else (MPS, ...): fp32.

Flags come from /proc/cpuinfo, so deciding needs no torch import unless the probe must run.
"""
from __future__ import annotations

import json
import logging
import os
import platform
from functools import lru_cache

from fststyle.atomic import write_text
from fststyle.cache import cache_dir

log = logging.getLogger(__name__)

# The one precision table: each precision's torch dtype (by name: this module imports no torch), Lightning's
# name for it in training, and OpenVINO's inference precision hint.
PRECISION_TABLE = {
    "fp32": {"torch": "float32", "lightning": "32-true", "openvino": "f32"},
    "bf16": {"torch": "bfloat16", "lightning": "bf16-mixed", "openvino": "bf16"},
    "fp16": {"torch": "float16", "lightning": "16-mixed", "openvino": "f16"},
}
PRECISIONS = ("auto", *PRECISION_TABLE)
PROBE_MIN_SPEEDUP = 1.3  # bf16 must beat fp32 by this much to be chosen: its outputs differ slightly
LIGHTNING_PRECISION = {name: row["lightning"] for name, row in PRECISION_TABLE.items()}
OPENVINO_PRECISION = {name: row["openvino"] for name, row in PRECISION_TABLE.items()}


def torch_dtype(precision: str):
    """The torch dtype of fp32 / bf16 / fp16."""
    import torch

    return getattr(torch, PRECISION_TABLE[precision]["torch"])


def check_precision(precision: str, allowed=PRECISIONS) -> str:
    if precision not in allowed:
        from fststyle.errors import UserError

        raise UserError(f"precision must be one of {', '.join(allowed)}, got {precision!r}")
    return precision


def resolve_device(device: str):
    """The one device resolver: ``auto`` -> CUDA, else MPS, else the CPU; a named device that is not here is
    one ``UserError``."""
    import torch

    from fststyle.errors import UserError

    device = str(device)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"device must be auto, cpu, cuda or mps, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda, but PyTorch sees no CUDA GPU here; use device=auto or device=cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("device=mps, but MPS is not available here; use device=auto or device=cpu")
    return dev


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, feature flags) of the CPU, from /proc/cpuinfo where there is one."""
    name, flags = None, None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key == "model name" and name is None:
                    name = value
                elif key in ("flags", "Features") and flags is None:  # x86, ARM
                    flags = frozenset(value.split())
                if name is not None and flags is not None:
                    break
    except OSError:
        pass
    name, flags = name or platform.processor() or platform.machine(), flags or frozenset()
    return name, flags


def machine_summary(device: str = "cpu") -> str:
    """One line naming the hardware, for every benchmark's output."""
    if str(device).startswith("cuda"):
        import torch

        props = torch.cuda.get_device_properties(torch.device(device))
        return f"GPU {props.name} (sm_{props.major}{props.minor}, {props.total_memory / 2**30:.0f} GiB)"
    name, flags = cpu_info()
    simd = [f for f in ("amx_bf16", "avx512_bf16", "avx512_fp16", "avx512f", "avx2") if f in flags]
    return f"CPU {name}, {os.cpu_count()} cores, flags: {' '.join(simd) or 'none of amx_bf16/avx512_bf16/avx512f/avx2'}"


def cpu_precision(flags: frozenset[str], probe=None) -> str:
    """bf16 or fp32 for this CPU; ``probe()`` (bf16/fp32 speed-up) is asked only when the flags cannot tell."""
    if "amx_bf16" in flags:
        return "bf16"
    if "avx512_bf16" not in flags:
        return "fp32"
    speedup = (probe or cached_probe)()
    return "bf16" if speedup >= PROBE_MIN_SPEEDUP else "fp32"


def cuda_precision(capability: tuple[int, int]) -> str:
    if capability >= (8, 0):
        return "bf16"
    if capability >= (7, 0):
        return "fp16"
    return "fp32"


def auto_precision(device_type: str = "cpu") -> str:
    """The precision ``precision=auto`` stands for on this device type (cpu, cuda, mps, ...)."""
    if device_type == "cuda":
        import torch

        return cuda_precision(torch.cuda.get_device_capability())
    if device_type == "cpu":
        return cpu_precision(cpu_info()[1])
    return "fp32"


def resolve_precision(precision: str, device_type: str = "cpu") -> str:
    """``auto`` -> this device's choice, printed once; fp32/bf16/fp16 as given."""
    check_precision(precision)
    if precision != "auto":
        return precision
    chosen = auto_precision(device_type)
    announce(f"precision=auto: {chosen} on this {device_type} ({machine_summary(device_type) if device_type == 'cpu' else device_type})")
    return chosen


_announced: set[str] = set()


def announce(line: str) -> None:
    if line not in _announced:
        _announced.add(line)
        print(line, flush=True)


def probe_speedup(size: tuple[int, int] = (128, 128), channels: int = 128, repeats: int = 3, rounds: int = 3) -> float:
    """fp32 time / bf16 time of one 3x3 convolution (the networks' commonest layer), in channels_last.

    Timed in alternating rounds, best of each, so a busy neighbour core skews it less (~0.5 s).
    """
    import time

    import torch

    if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return 0.0
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(2, channels, *size).to(memory_format=torch.channels_last)
    best = {}
    with torch.inference_mode():
        for dtype in (torch.float32, torch.bfloat16) * rounds:
            layer, inp = conv.to(dtype), x.to(dtype)
            layer(inp)  # warm-up: oneDNN builds its kernel
            start = time.perf_counter()
            for _ in range(repeats):
                layer(inp)
            best[dtype] = min(best.get(dtype, float("inf")), time.perf_counter() - start)
    return best[torch.float32] / best[torch.bfloat16]


def cached_probe() -> float:
    """``probe_speedup()`` once per CPU model and torch version; the answer lives in the cache folder.

    Reading the answer must not import torch (1.3 s): infer.py's CPU path runs without it.
    """
    from importlib.metadata import version

    name, _ = cpu_info()
    key = f"{name}|{os.cpu_count()}|torch {version('torch')}"
    path = cache_dir() / "precision-probe.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = round(probe_speedup(), 3)
        log.info("bf16/fp32 convolution speed on %s: %.2fx", name, known[key])
        try:
            write_text(path, json.dumps(known, indent=1))
        except OSError:
            pass  # a read-only cache only costs the probe again next time
    return float(known[key])
