"""Training throughput: fststyle's real Lightning path against pytorch/examples' fast_neural_style recipe.

    python bench/train_throughput.py                       # CPU, 256 px, batch 4
    python bench/train_throughput.py --device cuda --batch 16 --workers 8
    python bench/train_throughput.py --quality-check --size 128   # 200 steps fp32 vs fast: final style loss
    python bench/train_throughput.py --breakdown           # where a step's time goes, and what bounds it

Both sides run complete training steps (forward, loss, backward, Adam) on the same photos, image
size and batch, in the same process. The rounds alternate (baseline steps, then a Lightning fit),
so a machine shared with other work loads both sides alike; the ratio is only meaningful within
one run. "with data" is wall time per image including loading; "compute" leaves out the time
spent waiting for the next batch.

The baseline is written here so it cannot drift: pytorch/examples/fast_neural_style/neural_style
(transformer_net.py, vgg.py, utils.py, train()) as published: fp32, NCHW, VGG16 through relu4_3 on
both the output and the content batch, a Gram matrix per step, num_workers=0 PIL loading with
Resize + CenterCrop + ToTensor + mul(255), ImageNet mean/std normalisation. Offline, its VGG gets
the Caffe VGG16 weights from --weights instead of torchvision's download (same shapes, same cost).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from fststyle.memory import keep_freed_memory  # noqa: E402


# ----------------------------------------------------------------------------------------------
# (a) the baseline: pytorch/examples fast_neural_style, reproduced
# ----------------------------------------------------------------------------------------------
class ExamplesConvLayer(nn.Module):
    def __init__(self, cin, cout, kernel, stride):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class ExamplesResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = ExamplesConvLayer(channels, channels, 3, 1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ExamplesConvLayer(channels, channels, 3, 1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(out)) + x


class ExamplesUpsampleConvLayer(nn.Module):
    def __init__(self, cin, cout, kernel, stride, upsample=None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x):
        if self.upsample:
            x = nn.functional.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class ExamplesTransformerNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.in1 = ExamplesConvLayer(3, 32, 9, 1), nn.InstanceNorm2d(32, affine=True)
        self.conv2, self.in2 = ExamplesConvLayer(32, 64, 3, 2), nn.InstanceNorm2d(64, affine=True)
        self.conv3, self.in3 = ExamplesConvLayer(64, 128, 3, 2), nn.InstanceNorm2d(128, affine=True)
        self.res = nn.Sequential(*[ExamplesResidualBlock(128) for _ in range(5)])
        self.deconv1, self.in4 = ExamplesUpsampleConvLayer(128, 64, 3, 1, 2), nn.InstanceNorm2d(64, affine=True)
        self.deconv2, self.in5 = ExamplesUpsampleConvLayer(64, 32, 3, 1, 2), nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = ExamplesUpsampleConvLayer(32, 3, 9, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


class ExamplesVgg16(nn.Module):
    """relu1_2, relu2_2, relu3_3, relu4_3 of torchvision's vgg16().features, frozen."""

    def __init__(self, weights: Path):
        super().__init__()
        import torchvision

        features = torchvision.models.vgg16(weights=None).features
        state = torch.load(weights, map_location="cpu", weights_only=True)
        features.load_state_dict({k.removeprefix("features."): v for k, v in state.items() if "classifier" not in k})
        self.slice1, self.slice2 = features[0:4], features[4:9]
        self.slice3, self.slice4 = features[9:16], features[16:23]
        self.requires_grad_(False)

    def forward(self, x):
        h1 = self.slice1(x)
        h2 = self.slice2(h1)
        h3 = self.slice3(h2)
        h4 = self.slice4(h3)
        return h1, h2, h3, h4


def examples_gram_matrix(y):
    b, ch, h, w = y.size()
    features = y.view(b, ch, w * h)
    return features.bmm(features.transpose(1, 2)) / (ch * h * w)


def autograd_gram(features):
    """fststyle's Gram matrix before GramProduct: autograd's bmm backward (two products and a strided add), after a
    cast to fp32 that autocast undid for the product. Kept here so that --breakdown can time the change."""
    n, c, h, w = features.shape
    f = features.float()
    if f.is_contiguous(memory_format=torch.channels_last) and not f.is_contiguous():
        f = f.permute(0, 2, 3, 1).reshape(n, h * w, c)
        return torch.bmm(f.transpose(1, 2), f) / (c * h * w)
    f = f.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def examples_normalize_batch(batch):
    mean = batch.new_tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
    std = batch.new_tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)
    return (batch.div(255.0) - mean) / std


class ExamplesImages(torch.utils.data.Dataset):
    """datasets.ImageFolder's loading (PIL open + convert RGB) with the examples' transform, minus class folders."""

    def __init__(self, root: Path, size: int):
        from torchvision import transforms

        self.paths = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        self.transform = transforms.Compose(
            [transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(), transforms.Lambda(lambda x: x.mul(255))]
        )

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        with open(self.paths[i], "rb") as f:
            return self.transform(Image.open(f).convert("RGB"))


class Baseline:
    """pytorch/examples' train() loop body, one step at a time, timed."""

    def __init__(self, args, device: torch.device):
        from PIL import Image
        from torchvision import transforms

        self.device, self.batch = device, args.batch
        self.loader = torch.utils.data.DataLoader(ExamplesImages(args.data, args.size), batch_size=args.batch)
        self.batches = iter(())
        self.transformer = ExamplesTransformerNet().to(device)
        self.optimizer = torch.optim.Adam(self.transformer.parameters(), 1e-3)
        self.vgg = ExamplesVgg16(args.weights).to(device)
        style = transforms.Compose([transforms.ToTensor(), transforms.Lambda(lambda x: x.mul(255))])
        style = style(Image.open(args.style).convert("RGB")).repeat(args.batch, 1, 1, 1).to(device)
        self.gram_style = [examples_gram_matrix(y) for y in self.vgg(examples_normalize_batch(style))]
        self.content_weight, self.style_weight = 1e5, 1e10

    def next_batch(self) -> torch.Tensor:
        x = next(self.batches, None)
        if x is None or len(x) < self.batch:
            self.batches = iter(self.loader)
            x = next(self.batches)
        return x

    def train_step(self, x: torch.Tensor) -> None:
        """The examples' step on one batch of 0-255 images already on the device."""
        n_batch = len(x)
        self.optimizer.zero_grad()
        y = self.transformer(x)
        y, x = examples_normalize_batch(y), examples_normalize_batch(x)
        features_y, features_x = self.vgg(y), self.vgg(x)
        content_loss = self.content_weight * nn.functional.mse_loss(features_y[1], features_x[1])
        style_loss = 0.0
        for ft_y, gm_s in zip(features_y, self.gram_style):
            style_loss += nn.functional.mse_loss(examples_gram_matrix(ft_y), gm_s[:n_batch, :, :])
        total_loss = content_loss + self.style_weight * style_loss
        total_loss.backward()
        self.optimizer.step()
        total_loss.item()  # the examples accumulate .item() for their log line every step

    def step(self) -> tuple[float, float]:
        """One step; returns (seconds with loading, seconds without)."""
        start = time.perf_counter()
        x = self.next_batch()
        loaded = time.perf_counter()
        self.train_step(x.to(self.device))
        end = time.perf_counter()
        return end - start, end - loaded


# ----------------------------------------------------------------------------------------------
# (b) fststyle: the real config, module, datamodule and Lightning Trainer
# ----------------------------------------------------------------------------------------------
def fststyle_config(args, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from fststyle.train.run import trainer_precision

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose(
            "train",
            overrides=[
                f"style.image={args.style}",
                "style.sha256=null",
                "data=folder",
                f"data.path={args.data}",
                f"data.image_size={args.size}",
                f"data.batch_size={args.batch}",
                f"data.num_workers={args.workers}",
                f"loss.weights={args.weights}",
                "logger=none",
                "run_dir=/tmp/fststyle-bench",
                *overrides,
            ],
        )
    cfg.trainer.precision = trainer_precision(cfg)  # precision=auto, resolved as train.py does
    return cfg


def build_fststyle(cfg):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from fststyle.train.module import StyleTransferModule

    config = OmegaConf.to_container(cfg, resolve=True)
    module = StyleTransferModule(
        model=config["model"], loss=config["loss"], style=config["style"], optim=config["optim"], config=config,
        speed=config.get("speed"),
    )
    return module, instantiate(cfg.data)


def styled_module(args, cfg, device: torch.device):
    """The fststyle module on ``device`` with ``--style``'s targets set, for the benches that time its step directly."""
    from fststyle.style import load_style

    module, _ = build_fststyle(cfg)
    module.to(device).loss.set_style(load_style(str(args.style), None, cfg.style.size).to(device))
    return module


def step_timer():
    import pytorch_lightning as pl

    class StepTimer(pl.Callback):
        """Per step: time in the step (forward, loss, backward, optimizer) and wall time at its end."""

        def __init__(self):
            self.fit_start, self.compute, self.ends, self.style = 0.0, [], [], []

        def on_fit_start(self, trainer, module):
            self.fit_start = time.perf_counter()

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            now = time.perf_counter()
            self.compute.append(now - self.start)
            self.ends.append(now)
            self.style.append(float(trainer.callback_metrics["train/style"]))

    return StepTimer()


def fit(module, datamodule, cfg, steps: int, callbacks=()):
    from hydra.utils import instantiate

    trainer = instantiate(
        cfg.trainer, max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        limit_val_batches=0, log_every_n_steps=1, default_root_dir="/tmp/fststyle-bench",
        callbacks=list(callbacks),
    )
    trainer.fit(module, datamodule=datamodule)
    return trainer


# ----------------------------------------------------------------------------------------------
def throughput(args, device: torch.device, overrides: list[str]) -> None:
    import pytorch_lightning as pl

    pl.seed_everything(0, verbose=False)
    cfg = fststyle_config(args, overrides)
    keep_freed_memory(cfg.speed.keep_freed_memory)  # as train.py does; the baseline shares the process and gains too
    baseline = Baseline(args, device)
    module, datamodule = build_fststyle(cfg)
    base_wall, base_compute, ours_wall, ours_compute, first_step = [], [], [], [], []
    for r in range(args.rounds):
        for i in range(args.warmup + args.steps):
            wall, compute = baseline.step()
            if i >= args.warmup:
                base_wall.append(wall)
                base_compute.append(compute)
        timer = step_timer()
        fit(module, datamodule, cfg, args.warmup + args.steps, [timer])
        first_step.append(timer.ends[0] - timer.fit_start)
        ends = timer.ends[args.warmup - 1:] if args.warmup else [timer.fit_start, *timer.ends]
        ours_wall += [b - a for a, b in zip(ends, ends[1:])]
        ours_compute += timer.compute[args.warmup:]
        print(
            f"round {r + 1}/{args.rounds}: baseline {args.batch * args.steps / sum(base_wall[-args.steps:]):.2f} img/s, "
            f"fststyle {args.batch * args.steps / sum(ours_wall[-args.steps:]):.2f} img/s",
            flush=True,
        )

    def rate(times):
        return args.batch * len(times) / sum(times)

    rows = [
        ("baseline: pytorch/examples recipe (fp32, NCHW, num_workers=0)", rate(base_wall), rate(base_compute)),
        (f"fststyle: {describe(cfg)}", rate(ours_wall), rate(ours_compute)),
    ]
    print(f"\n{args.size}x{args.size}, batch {args.batch}, {args.rounds} rounds x {args.steps} timed steps "
          f"(+{args.warmup} warm-up), device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'':68s} {'img/s with data':>16s} {'img/s compute':>14s}")
    for name, wall, compute in rows:
        print(f"{name:68s} {wall:16.2f} {compute:14.2f}")
    print(f"{'ratio fststyle / baseline':68s} {rows[1][1] / rows[0][1]:15.2f}x {rows[1][2] / rows[0][2]:13.2f}x")
    print(f"fststyle first step (fit start to end of step 1): {', '.join(f'{t:.1f}' for t in first_step)} s per round")
    print(f"median step: baseline {statistics.median(base_wall):.3f} s, fststyle {statistics.median(ours_wall):.3f} s")


def describe(cfg) -> str:
    speed = cfg.speed
    return (f"{cfg.trainer.precision}, channels_last={speed.channels_last}, compile={speed.compile}, "
            f"workers={cfg.data.num_workers}")


def quality_check(args, overrides: list[str]) -> bool:
    """Train ``--quality-steps`` steps in fp32 and with the fast settings from the same seed, then score
    both transformers in fp32 on the same fixed images: the fast run's style loss must be within 5%."""
    import pytorch_lightning as pl

    results = {}
    runs = {
        "fp32": [*overrides, "trainer.precision=32-true", "speed.channels_last=false", "speed.compile=false"],
        "fast": overrides,
    }
    for name, run_overrides in runs.items():
        pl.seed_everything(0, verbose=False)
        cfg = fststyle_config(args, run_overrides)
        module, datamodule = build_fststyle(cfg)
        start = time.perf_counter()
        fit(module, datamodule, cfg, args.quality_steps)
        seconds = time.perf_counter() - start
        datamodule.setup("validate")
        images = next(iter(datamodule.val_dataloader())).float().div(255)
        with torch.no_grad():
            module.eval()
            losses = module.loss(module.transformer(images.to(module.device)), images.to(module.device))
        results[name] = {k: float(v) for k, v in losses.items()}
        print(f"{name}: {describe(cfg)}: {args.quality_steps} steps in {seconds:.0f} s; fp32 losses on "
              f"{len(images)} fixed images: " + ", ".join(f"{k} {v:.4g}" for k, v in results[name].items()), flush=True)
    diff = abs(results["fast"]["style"] - results["fp32"]["style"]) / results["fp32"]["style"]
    ok = diff <= 0.05
    print(f"final style loss: fp32 {results['fp32']['style']:.4g}, fast {results['fast']['style']:.4g}, "
          f"difference {100 * diff:.1f}% (limit 5%): {'OK' if ok else 'FAIL'}")
    return ok


def training_step(trained, x: torch.Tensor, bf16: bool):
    """One whole step (forward, loss, backward, Adam) of ``trained``'s transformer on ``x``, as the module's
    training_step runs it under the trainer's precision."""
    optimizer = torch.optim.Adam(trained.transformer.parameters(), 1e-3)

    def step():
        optimizer.zero_grad()
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            losses = trained.step_losses(x)
        losses["total"].backward()
        optimizer.step()
    return step


def steady_steps(args, device: torch.device, overrides: list[str], keep: bool, steps: int = 8) -> None:
    """In this (fresh) process: whole training steps on one batch with glibc untouched or keeping freed memory;
    prints the best and median step, the median page faults per step and the peak RSS as JSON."""
    import json
    import resource

    if keep:
        keep_freed_memory()
    torch.manual_seed(0)
    x = Baseline(args, device).next_batch().to(device).div(255)
    cfg = fststyle_config(args, overrides)
    step = training_step(styled_module(args, cfg, device), x, str(cfg.trainer.precision).startswith("bf16"))
    times, faults = [], []
    for i in range(3 + steps):  # three to settle the heap and oneDNN's primitives
        start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        step()
        if i >= 3:
            times.append(time.perf_counter() - start)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    # VmHWM: this process's own peak (getrusage's ru_maxrss carries the parent's over fork and exec)
    hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"best": min(times), "median": statistics.median(times), "faults": statistics.median(faults),
                      "peak_rss_gb": hwm_kb / 1e6}))


def freed_memory_processes(args, overrides: list[str], rounds: int = 2) -> dict:
    """``steady_steps`` in fresh processes, alternating keep and glibc's default: glibc's mmap threshold moves with a
    process's history, so only a process that never touched it shows the default."""
    import json
    import subprocess

    common = [sys.executable, __file__, "--size", str(args.size), "--batch", str(args.batch), "--data", str(args.data),
              "--weights", str(args.weights), "--style", str(args.style), "--device", str(args.device)]
    results = {True: [], False: []}
    for _ in range(rounds):
        for keep in (True, False):
            done = subprocess.run([*common, "--steady-process", "keep" if keep else "default", *overrides],
                                  capture_output=True, text=True, check=True)
            results[keep].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {keep: {key: (min if key == "best" else statistics.median)(r[key] for r in rows) for key in rows[0]}
            for keep, rows in results.items()}


def breakdown(args, device: torch.device, overrides: list[str]) -> None:
    """Time each phase of one step on the same batch, count its convolution/matmul FLOPs, and compare the
    achieved rate with this machine's convolution peak in fp32 and bf16 (VGG16 forward), measured here too."""
    from timing import best_of, best_of_each, conv_peak_run, conv_rate, flops  # bench/timing.py

    from fststyle.nets.transformer import ReflectionPad, Upsample

    torch.manual_seed(0)
    cfg = fststyle_config(args, overrides)
    keep_freed_memory(cfg.speed.keep_freed_memory)  # as train.py does, for both sides (the fresh-process line shows its worth)
    baseline = Baseline(args, device)
    x255 = baseline.next_batch().to(device)
    module = styled_module(args, cfg, device)
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    x = x255.div(255)  # the same photos in [0, 1], as the module's to_float gives them

    # -- baseline phases (fp32, NCHW) -----------------------------------------------------------
    def b_transformer():
        with torch.no_grad():
            return baseline.transformer(x255)

    def b_vgg_content():
        with torch.no_grad():
            return baseline.vgg(examples_normalize_batch(x255))

    def b_full():
        baseline.train_step(x255)

    # -- fststyle phases (the module's own training_step, under the trainer's precision) -----------
    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def f_transformer():
        with torch.no_grad(), autocast():
            return module.transformer(x)

    def f_vgg_content():
        with torch.no_grad(), autocast():
            return module.loss.content_features(module.loss_layout(x, x)[1])

    f_full = training_step(module, x, bf16)

    # The same step as it ran before each exact change, reverted one more at a time, to show each in this run: the
    # reflection padding with torch's own backward (reflection_pad2d_backward, still in the activations' dtype), then
    # the Gram matrices with autograd's own bmm backward (after a cast to fp32, which autocast undid), then the nearest
    # up-sampling as resize + pad + 3x3 conv (eval mode picks that path; instance norm has no running statistics,
    # so nothing else changes), then the padding under autocast's fp32 policy (plain nn.ReflectionPad2d).
    class NativeBackwardPad(nn.ReflectionPad2d):
        def forward(self, x):
            with torch.autocast(x.device.type, enabled=False):
                return F.pad(x, self.padding, "reflect")

    def variant(reverted: int):
        clone = copy.deepcopy(module)
        if reverted >= 2:
            clone.loss.statistic = autograd_gram
        for parent in clone.transformer.modules():
            if reverted >= 3 and isinstance(parent, Upsample):
                parent.eval()
            for name, child in parent.named_children():
                if isinstance(child, ReflectionPad):
                    setattr(parent, name, (nn.ReflectionPad2d if reverted >= 4 else NativeBackwardPad)(child.padding))
        return training_step(clone, x, bf16)

    rows = [
        ("baseline", "transformer forward", b_transformer),
        ("baseline", "VGG forward, content (to relu4_3)", b_vgg_content),
        ("baseline", "whole step (fwd + bwd + Adam)", b_full),
        ("fststyle", "transformer forward", f_transformer),
        ("fststyle", f"VGG forward, content (to {max(cfg.loss.content_layers)})", f_vgg_content),
        ("fststyle", "whole step (fwd + bwd + Adam)", f_full),
    ]
    peaks = {"fp32": conv_rate(baseline.vgg, x), "bf16": conv_rate(baseline.vgg, x, "bf16")}  # VGG16 forward to relu4_3
    print(f"{args.size}x{args.size}, batch {args.batch}, device {device}, {torch.get_num_threads()} threads, "
          f"fststyle precision {cfg.trainer.precision}")
    print(f"convolution peak (VGG16 forward to relu4_3 on this batch): fp32 NCHW {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
          f"bf16 channels_last {peaks['bf16'] / 1e9:.0f} GFLOP/s (bf16/fp32 {peaks['bf16'] / peaks['fp32']:.2f}x)")
    print(f"{'':10s} {'phase':36s} {'seconds':>8s} {'GFLOP':>8s} {'GFLOP/s':>8s} {'% of peak':>9s}")
    whole = {}
    for side, name, fn in rows:
        seconds, work = best_of(fn), flops(fn)
        dtype = "bf16" if side == "fststyle" and bf16 else "fp32"
        print(f"{side:10s} {name:36s} {seconds:8.3f} {work / 1e9:8.1f} {work / seconds / 1e9:8.0f} "
              f"{100 * work / seconds / peaks[dtype]:8.0f}%")
        if name.startswith("whole"):
            whole[side] = (seconds, work, dtype)
    (tb, wb, _), (tf, wf, df) = whole["baseline"], whole["fststyle"]
    paired = best_of_each({"now": f_full, "torch's pad backward": variant(1), "and autograd's Gram backward": variant(2),
                           "and plain up-sampling": variant(3), "and fp32 padding": variant(4)})
    print("whole step, interleaved: " + ", ".join(f"{k} {v:.3f} s" for k, v in paired.items()) + "; now is "
          + " / ".join(f"{v / paired['now']:.2f}x" for k, v in paired.items() if k != "now") + " faster")
    peak_run = conv_peak_run(baseline.vgg, x, df)
    against = best_of_each({"peak": peak_run, "step": f_full}, repeats=5)
    peak = flops(peak_run) / against["peak"]
    print(f"whole step against the {df} peak, interleaved (best of 5 each, the same minutes): step {against['step']:.3f} s, "
          f"peak {peak / 1e9:.0f} GFLOP/s, **{100 * wf / against['step'] / peak:.0f}% of peak**")
    memory = freed_memory_processes(args, args.overrides)
    print("whole step in fresh processes (best / median of 8 after 3, two processes each): "
          + "; ".join(f"{name} {m['best']:.3f} / {m['median']:.3f} s, {m['faults']:.0f} page faults a step, peak RSS "
                      f"{m['peak_rss_gb']:.2f} GB" for name, m in (("keeping freed memory (speed.keep_freed_memory)", memory[True]),
                                                               ("glibc's default", memory[False])))
          + f"; keeping is {memory[False]['best'] / memory[True]['best']:.2f}x / {memory[False]['median'] / memory[True]['median']:.2f}x faster")
    print(f"step ratio fststyle/baseline: {tb / tf:.2f}x; of which fewer FLOPs {wb / wf:.2f}x, "
          f"faster FLOPs {(wf / tf) / (wb / tb):.2f}x")
    print(f"upper bound, every fststyle FLOP at the {df} convolution peak: {tb * peaks[df] / wf:.2f}x the baseline")

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        f_full()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    print("fststyle step, self time by op (torch.profiler):")
    for e in ops[:12]:
        print(f"  {e.key:44s} {e.self_cpu_time_total / 1e6:7.3f} s {100 * e.self_cpu_time_total / total:5.1f}%  x{e.count}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="training image size (square)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per side per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternations baseline -> fststyle")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--workers", type=int, default=2, help="fststyle's data.num_workers")
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "coco256")
    parser.add_argument("--weights", type=Path, default=SHARED / "weights" / "vgg16_caffe_features.pth")
    parser.add_argument("--style", type=Path, default=SHARED / "styles" / "starry_night.jpg")
    parser.add_argument("--quality-check", action="store_true", help="200 steps fp32 vs fast instead of throughput")
    parser.add_argument("--quality-steps", type=int, default=200)
    parser.add_argument("--breakdown", action="store_true", help="time and FLOPs per phase, against the convolution peak")
    parser.add_argument("--steady-process", choices=["keep", "default"], help=argparse.SUPPRESS)  # --breakdown's child
    parser.add_argument("overrides", nargs="*", help="fststyle config overrides, e.g. speed.compile=true")
    args = parser.parse_args(argv)
    for path in (args.data, args.weights, args.style):
        if not path.exists():
            parser.error(f"{path} does not exist (see --data, --weights, --style)")
    device = torch.device(args.device)
    from fststyle.hardware import machine_summary

    print(f"machine: {machine_summary(args.device)}; torch {torch.__version__}")
    overrides = ["trainer.accelerator=" + ("gpu" if device.type == "cuda" else "cpu"), *args.overrides]
    if device.type == "cuda" and device.index is not None:
        overrides.append(f"trainer.devices=[{device.index}]")
    if args.quality_check:
        return 0 if quality_check(args, overrides) else 1
    if args.steady_process:
        steady_steps(args, device, overrides, args.steady_process == "keep")
        return 0
    if args.breakdown:
        breakdown(args, device, overrides)
        return 0
    throughput(args, device, overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
