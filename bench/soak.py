"""Soak: a long training on a folder of 500 photos keeps its memory flat after warm-up (no leak per step or image).

    python bench/soak.py                                  # 500 photos, 2,000 steps at 64 px, batch 4, 2 workers
    python bench/soak.py --steps 400 --photos 100         # a quicker look
    python bench/soak.py --image-size 256                 # the zoo's crop size (about 30x slower on a CPU)

A real ``train.py`` process (the default callbacks, checkpoints every 250 steps, the CSV logger) trains on a
generated folder: photos of varied sizes and formats with a few unreadable files among them, so the skip path
runs all along. The bench adds one callback through the callbacks config group (``+callbacks.soak_rss``) that
records, 100 times over the run, the resident memory of the training process and of its data-loader workers (from
/proc, summed over the process tree). Flat means: the peak of the second half of the run is within ``--bound``
(default 5%) of the peak over the first quarter after warm-up. A small crop keeps 2,000 steps within minutes on a
2-core CPU; a leak per step, per image or per checkpoint shows at any crop size.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (0 when it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            try:
                kids = [int(k) for k in task.read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


class SoakRss(pl.Callback):
    """Appends {"step", "main_mb", "workers_mb"} to ``path`` every ``every`` steps (JSON lines)."""

    def __init__(self, path: str, every: int = 20):
        self.path, self.every = Path(path), every

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step % self.every == 0:
            me = os.getpid()
            record = {"step": trainer.global_step, "main_mb": round(rss_mb(me), 1),
                      "workers_mb": round(sum(rss_mb(p) for p in descendants(me)), 1)}
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def make_folder(folder: Path, count: int) -> Path:
    """``count`` photo-like images, 160-900 px, JPEG/PNG/WebP, with one unreadable file in fifty."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        if i % 50 == 49:
            (folder / f"{i}.jpg").write_bytes(b"not a photo\n" * (i % 7))
            continue
        w, h = (int(v) for v in rng.integers(160, 900, 2))
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1) + rng.normal(0, 20, (h, w, 3))
        fmt = ("jpg", "png", "webp")[i % 3]
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(folder / f"{i}.{fmt}")
    return folder


def verdict(records: list[dict], warmup: int, bound: float) -> tuple[float, float, bool]:
    """(peak MB over the first quarter after warm-up, peak MB over the second half, flat?)."""
    last = records[-1]["step"]
    total = [(r["step"], r["main_mb"] + r["workers_mb"]) for r in records if r["step"] >= warmup]
    early = max(mb for step, mb in total[:1] + [t for t in total if t[0] <= warmup + (last - warmup) / 4])
    late = max(mb for step, mb in total if step >= last / 2)
    return early, late, late <= early * (1 + bound)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=200, help="steps before memory is expected to settle")
    parser.add_argument("--bound", type=float, default=0.05, help="allowed growth of the late peak over the early")
    parser.add_argument("--weights", default=str(SHARED / "weights" / "vgg16_caffe_features.pth"))
    parser.add_argument("--style", default=str(SHARED / "styles" / "starry_night.jpg"))
    args = parser.parse_args()
    if not 0 <= args.warmup < args.steps // 2:
        parser.error(f"--warmup must be under half of --steps ({args.steps})")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = make_folder(tmp / "photos", args.photos)
        log = tmp / "rss.jsonl"
        command = [
            sys.executable, "train.py", f"style.image={args.style}", "data=folder", f"data.path={folder}",
            f"data.image_size={args.image_size}", f"data.batch_size={args.batch}", f"data.num_workers={args.workers}",
            f"loss.weights={args.weights}", "style.size=128", "logger=csv", f"trainer.max_steps={args.steps}",
            "checkpoint_every=250", f"run_dir={tmp / 'run'}", f"hydra.run.dir={tmp / 'run'}",
            f"export_dir={tmp / 'exports'}", "trainer.enable_progress_bar=false",
            "+callbacks.soak_rss._target_=bench.soak.SoakRss",  # this file, imported by the training process
            f"+callbacks.soak_rss.path={log}", f"+callbacks.soak_rss.every={max(1, args.steps // 100)}",
        ]
        start = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode:
            raise SystemExit(f"training failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        records = [json.loads(line) for line in log.read_text().splitlines()]
    early, late, flat = verdict(records, args.warmup, args.bound)
    print(f"{args.steps} steps, {args.photos} photos, {args.image_size} px, batch {args.batch}, "
          f"{args.workers} workers: {wall:.0f} s")
    print("step  main MB  workers MB")
    for r in records[:: max(1, len(records) // 12)] + ([records[-1]] if len(records) % 12 else []):
        print(f"{r['step']:>5} {r['main_mb']:>8.0f} {r['workers_mb']:>11.0f}")
    print(f"peak after warm-up (steps {args.warmup}-{args.warmup + (records[-1]['step'] - args.warmup) // 4}): "
          f"{early:.0f} MB; peak over the second half: {late:.0f} MB ({(late / early - 1) * 100:+.1f}%): "
          f"{'flat' if flat else 'GROWING'} (bound {args.bound:.0%})")
    raise SystemExit(0 if flat else 1)


if __name__ == "__main__":
    main()
