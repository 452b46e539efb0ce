"""Inference speed on a 1024x680 photo: baseline vs the paths infer.py can take, measured in one run.

Baseline = the same network, plain fp32 eager PyTorch, NCHW, batch 1, untiled, under no_grad
(what pytorch/examples does). Random weights: speed does not depend on them. Every other path
runs the network's exact faster form (fststyle/infer/rewrite.py); "as trained" rows show the network
without it. Paths are timed round-robin (bench/timing.py), best of --repeats.

    python bench/infer_speed.py [--repeats 5] [--layers] [--compile]
    python bench/infer_speed.py --device cuda [--batch 8]     # 1920x1080 video frames per second on a GPU
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import best_of, best_of_each, flops  # noqa: E402 - bench/timing.py

from fststyle.hardware import machine_summary, resolve_precision  # noqa: E402
from fststyle.infer.deploy import OnnxStylizer, OpenVinoStylizer, cached_onnx, installed  # noqa: E402
from fststyle.infer.stylizer import Stylizer  # noqa: E402
from fststyle.nets.transformer import TransformerNet  # noqa: E402
from fststyle.stylefile import export_transformer  # noqa: E402

DEFAULT = "openvino fp32"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", action="store_true", help="also OpenVINO's per-layer times for the default path")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (bf16, channels_last): minutes of compiling")
    parser.add_argument("--device", default="cpu", help="cuda: 1920x1080 frames per second instead of the CPU photo paths")
    parser.add_argument("--batch", type=int, default=8, help="frames per forward pass (--device cuda)")
    args = parser.parse_args()
    torch.manual_seed(0)
    net = TransformerNet().eval()
    if args.device != "cpu":
        print(f"machine: {machine_summary(args.device) if torch.cuda.is_available() else args.device}")
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise SystemExit(f"--device {args.device}: PyTorch sees no CUDA GPU here")
        frames_per_second(net, torch.device(args.device), (1080, 1920), args.batch, args.repeats, args.compile)
        return
    work = Path(tempfile.mkdtemp(prefix="fststyle-bench-"))
    os.environ["FSSTYLE_CACHE"] = str(work / "cache")
    style = export_transformer(net, work / "random.safetensors", {"name": "random"})
    photo = torch.rand(1, 3, 680, 1024)
    x = photo.numpy()
    print(f"machine: {machine_summary()}; torch {torch.__version__}, threads {torch.get_num_threads()}, image 1024x680")
    auto = resolve_precision("auto", "cpu")
    print(f"infer.py's CPU default here: openvino {auto} (precision=auto)")

    def baseline():
        with torch.no_grad():
            net(photo)

    stylizers = {
        "torch fp32 channels_last, as trained": Stylizer(net, rewrite=False),
        "torch fp32 channels_last": Stylizer(net),
        "torch bf16 channels_last, as trained": Stylizer(net, precision="bf16", rewrite=False),
        "torch bf16 channels_last": Stylizer(net, precision="bf16"),
    }
    paths = {"baseline fp32 eager NCHW": baseline} | {name: (lambda s=s: s(photo)) for name, s in stylizers.items()}
    runtimes = {}
    if installed("onnxruntime"):
        runtimes["onnxruntime fp32"] = OnnxStylizer(cached_onnx(style))
    if installed("openvino"):
        runtimes[DEFAULT] = OpenVinoStylizer(cached_onnx(style))
        runtimes["openvino bf16"] = OpenVinoStylizer(cached_onnx(style), precision="bf16")
    paths |= {name: (lambda r=r: r(x)) for name, r in runtimes.items()}

    with torch.no_grad():
        reference = net(photo)
    errors = {name: (s(photo) - reference).abs().mean().item() * 255 for name, s in stylizers.items()}
    errors |= {name: float(np.abs(r(x) - reference.numpy()).mean() * 255) for name, r in runtimes.items()}

    if args.compile:
        import torch._inductor.config as inductor

        inductor.freezing = True
        compiled = torch.compile(stylizers["torch bf16 channels_last"].net)
        xc = photo.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        name = "torch.compile bf16 channels_last (not in infer.py: compile time)"
        with torch.inference_mode():
            start = time.perf_counter()
            errors[name] = (compiled(xc).float() - reference).abs().mean().item() * 255
            print(f"torch.compile bf16: {time.perf_counter() - start:.0f} s to compile")
        paths[name] = lambda: torch.inference_mode()(compiled)(xc)

    results = best_of_each(paths, args.repeats)
    base = results["baseline fp32 eager NCHW"]
    print(f"\n{'path':66s} {'s/image':>8s} {'speed-up':>8s} {'MAE/255':>8s}")
    for name, t in results.items():
        err = f"{errors[name]:.3f}" if name in errors else "0"
        print(f"{name:66s} {t:8.3f} {base / t:7.2f}x {err:>8s}")

    ceiling(net, photo, base)
    if args.layers and DEFAULT in runtimes:
        layer_times(cached_onnx(style), x)
    whole_process(style, photo, work, args.repeats)


def frames_per_second(net: TransformerNet, device: torch.device, size: tuple[int, int], batch: int, repeats: int,
                      compile: bool = False) -> dict[str, float]:
    """Video frames per second on a GPU: the baseline one frame at a time in fp32, fststyle in batches."""
    import copy

    h, w = size
    base_net = copy.deepcopy(net).to(device)
    frame = torch.rand(1, 3, h, w, device=device)
    frames = torch.rand(batch, 3, h, w, device=device)

    def synced(fn):
        def run():
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
        return run

    def baseline():
        with torch.no_grad():
            base_net(frame)

    paths = {"baseline fp32 eager NCHW, batch 1": (synced(baseline), 1)}
    for precision in ("fp32", "bf16", "fp16"):
        stylizer = Stylizer(net, device=device, precision=precision)
        paths[f"fststyle {precision} channels_last, batch {batch}"] = (synced(lambda s=stylizer: s(frames)), batch)
    if compile:
        stylizer = Stylizer(net, device=device, precision="bf16")
        compiled = torch.compile(stylizer.net)
        x = frames.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        paths[f"torch.compile bf16 channels_last, batch {batch}"] = (synced(lambda: torch.inference_mode()(compiled)(x)), batch)
    times = best_of_each({name: fn for name, (fn, _) in paths.items()}, repeats)
    fps = {name: paths[name][1] / t for name, t in times.items()}
    name0 = next(iter(fps))
    print(f"{w}x{h} frames on {torch.cuda.get_device_name(device) if device.type == 'cuda' else device}")
    print(f"{'path':50s} {'frames/s':>9s} {'vs baseline':>11s}")
    for name, value in fps.items():
        print(f"{name:50s} {value:9.1f} {value / fps[name0]:10.2f}x")
    return fps


def ceiling(net: TransformerNet, photo: torch.Tensor, base: float) -> None:
    """The best ratio this machine allows an exact network: its FLOPs at the machine's dense-matmul rate."""
    from fststyle.infer.rewrite import faster_equivalent
    from fststyle.infer.stylizer import AlignedTransformer

    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        a = torch.randn(2048, 2048, dtype=dtype)
        rates[name] = 2 * 2048**3 / best_of(lambda: torch.mm(a, a))
    faster = AlignedTransformer(faster_equivalent(net))
    with torch.no_grad():
        plain, fast = flops(lambda: net(photo)), flops(lambda: faster(photo))
    best = max(rates, key=rates.get)
    floor = fast / rates[best]
    print(f"\nceiling: the network is {plain / 1e9:.0f} GFLOP as trained, {fast / 1e9:.0f} GFLOP in the faster form; "
          f"2048² matmul here: " + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in rates.items()) + " GFLOP/s; "
          f"every FLOP at the best ({best}) rate takes {floor:.2f} s = at most {base / floor:.2f}x the baseline")


def layer_times(onnx_path: Path, x: np.ndarray, top: int = 20) -> None:
    """OpenVINO's own per-layer counters: where the default path spends its time."""
    import openvino as ov

    model = ov.Core().compile_model(str(onnx_path), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": "YES"})
    request = model.create_infer_request()
    request.infer({0: x})
    request.infer({0: x})
    rows = sorted(((p.real_time.total_seconds() * 1000, p.node_type, p.exec_type, p.node_name) for p in request.get_profiling_info()), reverse=True)
    print(f"\nOpenVINO per layer (one call, {sum(r[0] for r in rows):.0f} ms in all), top {top}:")
    for ms, kind, impl, name in rows[:top]:
        print(f"{ms:8.1f} ms  {kind:13s} {impl:24s} {name[:70]}")


def whole_process(style: Path, photo: torch.Tensor, work: Path, repeats: int) -> None:
    """The whole ``python infer.py`` process, as a user runs it (ONNX graph already cached above)."""
    from PIL import Image

    src, tiny = work / "photo.jpg", work / "tiny.jpg"
    Image.fromarray((photo[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(src, quality=95)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tiny)

    def wall(cmd):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        return time.perf_counter() - start

    runs = {"1024x680 photo": [], "8x8 image (start-up cost)": [], "`python -c 'import torch'`": []}
    for i in range(repeats):
        runs["1024x680 photo"].append(wall([sys.executable, "infer.py", f"ckpt={style}", f"input={src}", f"output={work / f'out{i}.jpg'}"]))
        runs["8x8 image (start-up cost)"].append(wall([sys.executable, "infer.py", f"ckpt={style}", f"input={tiny}", f"output={work / f'tiny{i}.jpg'}"]))
        runs["`python -c 'import torch'`"].append(wall([sys.executable, "-c", "import torch"]))
    print("\nwhole `python infer.py ckpt=... input=IMAGE output=...` process:")
    for name, walls in runs.items():
        print(f"  {name:28s} best {min(walls):.2f} s (runs: {', '.join(f'{w:.2f}' for w in walls)})")


if __name__ == "__main__":
    main()
