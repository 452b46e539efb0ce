"""Inference speed on a 1024x680 photo: baseline vs the paths infer.py can take, measured in one run.

Baseline = the same network, plain fp32 eager PyTorch, NCHW, batch 1, untiled, under no_grad
(what pytorch/examples does). Random weights: speed does not depend on them.

    python bench/infer_speed.py [--repeats 3] [--compile]
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

from fststyle.export import export_transformer  # noqa: E402
from fststyle.inference import Stylizer  # noqa: E402
from fststyle.transformer import TransformerNet  # noqa: E402
from timing import best_of  # noqa: E402 - bench/timing.py


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also torch.compile (bf16, channels_last): minutes of compiling")
    args = parser.parse_args()
    torch.manual_seed(0)
    net = TransformerNet().eval()
    work = Path(tempfile.mkdtemp(prefix="fststyle-bench-"))
    os.environ["FSSTYLE_CACHE"] = str(work / "cache")
    style = export_transformer(net, work / "random.safetensors", {"name": "random"})
    photo = torch.rand(1, 3, 680, 1024)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, image 1024x680")

    def baseline():
        with torch.no_grad():
            net(photo)

    results = {"baseline fp32 eager NCHW": best_of(baseline, args.repeats)}
    reference = Stylizer(net)(photo)
    errors = {}

    fast = Stylizer(net)  # channels_last + inference_mode, fp32
    results["torch fp32 channels_last inference_mode"] = best_of(lambda: fast(photo), args.repeats)
    bf16 = Stylizer(net, precision="bf16")
    results["torch bf16 channels_last"] = best_of(lambda: bf16(photo), args.repeats)
    errors["torch bf16 channels_last"] = (bf16(photo) - reference).abs().mean().item() * 255

    from fststyle.deploy import OnnxStylizer

    ort_stylizer = OnnxStylizer.from_checkpoint(style)
    x = photo.numpy()
    results["onnxruntime fp32 (infer.py CPU default)"] = best_of(lambda: ort_stylizer(x), args.repeats)
    errors["onnxruntime fp32 (infer.py CPU default)"] = float(np.abs(ort_stylizer(x) - reference.numpy()).mean() * 255)

    if args.compile:
        import torch._inductor.config as inductor

        inductor.freezing = True
        compiled = torch.compile(bf16.net)
        xc = photo.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            start = time.perf_counter()
            compiled(xc)
            print(f"torch.compile bf16: {time.perf_counter() - start:.0f} s to compile")
            results["torch.compile bf16 channels_last (not in infer.py: compile time)"] = best_of(lambda: compiled(xc), args.repeats)
            errors["torch.compile bf16 channels_last (not in infer.py: compile time)"] = (compiled(xc).float() - reference).abs().mean().item() * 255

    base = results["baseline fp32 eager NCHW"]
    print(f"\n{'path':66s} {'s/image':>8s} {'speed-up':>8s} {'MAE/255':>8s}")
    for name, t in results.items():
        err = f"{errors[name]:.3f}" if name in errors else "0"
        print(f"{name:66s} {t:8.3f} {base / t:7.2f}x {err:>8s}")

    # the whole process, as a user runs it (ONNX graph already cached by the run above)
    from PIL import Image

    src = work / "photo.jpg"
    Image.fromarray((photo[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(src, quality=95)
    walls = []
    for i in range(args.repeats):
        cmd = [sys.executable, "infer.py", f"ckpt={style}", f"input={src}", f"output={work / f'out{i}.jpg'}"]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    torch_import = time.perf_counter() - start
    print(f"\nwhole `python infer.py ckpt=... input=photo.jpg output=...` process: best {min(walls):.2f} s "
          f"(runs: {', '.join(f'{w:.2f}' for w in walls)}); for scale: `python -c 'import torch'` alone takes {torch_import:.2f} s")


if __name__ == "__main__":
    main()
