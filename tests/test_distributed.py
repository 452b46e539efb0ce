"""DDP on CPU (gloo), stream sharding over ranks x workers, and Hydra multirun over styles. No network."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from fststyle.errors import UserError
from fststyle.train.data import StyleDataModule, list_images
from fststyle.train.distributed import scaled_optim
from fststyle.train.sharding import SAMPLE_LOG_ENV

from .conftest import PIPE_TEST_BALANCE, ROOT, STYLES

TINY = [
    "data=folder",
    "data.image_size=64",
    "data.batch_size=2",
    "data.num_workers=0",
    "style.size=128",
    *PIPE_TEST_BALANCE,  # the balance the 20-step loss-fall check was set on
    "logger=csv",
    "trainer.log_every_n_steps=1",
]


def run_train(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled", **env}
    result = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    if result.returncode not in (0, 2):
        print(result.stdout[-3000:], result.stderr[-5000:])
    return result


def logged_keys(folder: Path) -> dict[str, list[str]]:
    """{file stem: keys}; files are rank<R>-worker<W>-pid<P>.txt."""
    return {f.stem: f.read_text().split() for f in sorted(folder.glob("*.txt"))}


def losses(metrics: Path) -> list[float]:
    return [float(row["train/total"]) for row in csv.DictReader(metrics.open()) if row.get("train/total")]


def test_ddp_two_processes_train_disjoint_export_once_and_resume(tmp_path, coco_dir, vgg16_caffe, starry_night):
    run_dir, exports, keys = tmp_path / "run", tmp_path / "exports", tmp_path / "keys"
    args = [
        f"style.image={starry_night}",
        f"data.path={coco_dir}",
        f"loss.weights={vgg16_caffe}",
        *TINY,
        "trainer.accelerator=cpu",  # Lightning's own keys on the default trainer group, no trainer=ddp (issue 13)
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.val_check_interval=10",
        "checkpoint_every=10",
        f"run_dir={run_dir}",
        f"export_dir={exports}",
    ]
    first = run_train([*args, "trainer.max_steps=20"], tmp_path, **{SAMPLE_LOG_ENV: str(keys)})
    assert first.returncode == 0, first.stderr[-3000:]

    # One export, written by rank 0 only.
    assert [p.name for p in exports.iterdir()] == ["starry_night.safetensors"]
    assert [line for line in first.stdout.splitlines() if line.startswith("exported ")] == [
        f"exported {exports / 'starry_night.safetensors'}"
    ]  # train.py prints it on rank 0 only (both ranks share this stdout)

    # The loss falls (noisy at batch 2: compare the means of the first and last five steps).
    curve = losses(run_dir / "logs" / "version_0" / "metrics.csv")
    assert len(curve) == 20
    assert sum(curve[-5:]) < 0.7 * sum(curve[:5]), curve

    # Each rank loaded its own 20 steps x 2 images, and no image went to both.
    per_rank = {stem.split("-")[0]: ks for stem, ks in logged_keys(keys).items()}
    assert sorted(per_rank) == ["rank0", "rank1"]
    assert len(per_rank["rank0"]) == len(per_rank["rank1"]) == 40
    assert not set(per_rank["rank0"]) & set(per_rank["rank1"])
    assert all(Path(k).parent == coco_dir for k in per_rank["rank0"] + per_rank["rank1"])

    # Rank 0 writes the sample grids, with all 4 validation images (4 x 64 px + padding wide), not its half.
    grids = sorted((run_dir / "samples").glob("*.jpg"))
    assert [g.name for g in grids] == ["step_0000010.jpg", "step_0000020.jpg"]
    assert Image.open(grids[-1]).size == (4 * 66 + 2, 2 * 66 + 2)

    # Resuming the DDP run continues from its last checkpoint (step 20) up to 30.
    second = run_train([*args, "resume=true", "trainer.max_steps=30"], tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    rows = csv.DictReader((run_dir / "logs" / "version_1" / "metrics.csv").open())
    steps = [int(r["step"]) for r in rows if r.get("train/total")]  # training steps (end-of-run totals log at 30)
    assert min(steps) == 20 and max(steps) == 29
    assert [p.name for p in exports.iterdir()] == ["starry_night.safetensors"]


@pytest.mark.parametrize("shards", [None, 4, 3], ids=["imagefolder-1-shard", "4-shards", "3-shards"])
def test_stream_split_over_2_ranks_x_2_workers_covers_every_image_once(tmp_path, monkeypatch, coco_dir, shards):
    """None: the folder streamed like a Hub dataset (1 shard: workers split it per example); 4: shards split
    per rank and per worker; 3: not a multiple of the world size, so ranks split per example, workers per shard."""
    monkeypatch.setenv(SAMPLE_LOG_ENV, str(tmp_path / "keys"))
    expected = {os.path.realpath(p) for p in list_images(coco_dir)}  # ../shared may be a symlink
    if shards is not None:

        def in_memory_stream(self):  # the folder's records as a stream with a chosen number of shards
            train, val = self.folder_datasets()
            stream = train.to_iterable_dataset(num_shards=shards)
            return stream.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer), val

        monkeypatch.setattr(StyleDataModule, "hub_datasets", in_memory_stream)
        expected -= {os.path.realpath(p) for p in list_images(coco_dir)[:4]}  # held out for sample grids

    for rank in range(2):
        data = StyleDataModule(
            source="hub", name=str(coco_dir), path=str(coco_dir), split="train", val_split="train",
            image_size=32, batch_size=8, num_workers=2, shuffle_buffer=64,
        )
        data.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        data.setup("fit")
        batches = list(data.train_dataloader())
        assert batches and all(b.shape[1:] == (3, 32, 32) for b in batches)

    logs = logged_keys(tmp_path / "keys")
    counts = Counter(os.path.realpath(k) for keys in logs.values() for k in keys)
    assert set(counts) == expected and set(counts.values()) == {1}, "every image exactly once"
    workers = {stem.rsplit("-", 1)[0] for stem, keys in logs.items() if keys}
    assert workers == {"rank0-worker0", "rank0-worker1", "rank1-worker0", "rank1-worker1"}, "no worker idle"
    per_rank = Counter(stem.split("-")[0] for stem, keys in logs.items() for _ in keys)
    assert abs(per_rank["rank0"] - per_rank["rank1"]) <= len(expected) // 4, per_rank  # no rank starved


def test_multirun_two_styles_gives_two_exports(tmp_path, coco_dir, vgg16_caffe):
    for name in ("starry_night", "wave"):
        if not (STYLES / f"{name}.jpg").exists():
            pytest.skip("../shared/styles not present")
    sweep, exports = tmp_path / "multirun", tmp_path / "exports"
    result = run_train(
        [
            "-m",
            "style=starry_night,wave",
            f"style.image={STYLES}/${{style.name}}.jpg",
            f"data.path={coco_dir}",
            f"loss.weights={vgg16_caffe}",
            *TINY,
            "trainer.accelerator=cpu",
            "trainer.max_steps=2",
            f"hydra.sweep.dir={sweep}",
            f"export_dir={exports}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in exports.iterdir()) == ["starry_night.safetensors", "wave.safetensors"]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0_starry_night", "1_wave"]
    for job in ("0_starry_night", "1_wave"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()


def test_multirun_refuses_lightning_started_ddp(tmp_path, coco_dir, vgg16_caffe, starry_night):
    result = run_train(
        [
            "-m",
            "style=starry_night",
            f"style.image={starry_night}",
            f"data.path={coco_dir}",
            f"loss.weights={vgg16_caffe}",
            *TINY,
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
            f"export_dir={tmp_path / 'exports'}",
        ],
        tmp_path,
    )
    assert result.returncode == 2
    assert "error: a multirun (-m) cannot let Lightning start the DDP processes" in result.stderr
    assert not (tmp_path / "exports").exists()


def test_lr_scaling_with_world_size():
    optim = {"lr": 1e-3, "scale_lr_with_world_size": False}
    assert scaled_optim(optim, 8)["lr"] == 1e-3
    assert scaled_optim({**optim, "scale_lr_with_world_size": True}, 8)["lr"] == pytest.approx(8e-3)
    assert scaled_optim({**optim, "scale_lr_with_world_size": "linear"}, 4)["lr"] == pytest.approx(4e-3)
    assert scaled_optim({**optim, "scale_lr_with_world_size": "sqrt"}, 4)["lr"] == pytest.approx(2e-3)
    assert scaled_optim({"lr": 1e-3}, 8)["lr"] == 1e-3
    with pytest.raises(UserError, match="scale_lr_with_world_size"):
        scaled_optim({**optim, "scale_lr_with_world_size": "cube"}, 2)


def test_slurm_launcher_config_asks_one_task_per_gpu():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    overrides = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"]
    overrides += ["trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)  # the object Hydra builds for `-m hydra/launcher=slurm`
    assert {k: launcher.params[k] for k in ("nodes", "tasks_per_node", "gpus_per_node", "partition")} == {
        "nodes": 2, "tasks_per_node": 8, "gpus_per_node": 8, "partition": "gpu"
    }


def test_resume_prefers_slurm_requeue_checkpoint(tmp_path):
    from omegaconf import OmegaConf

    from fststyle.train.run import resume_checkpoint

    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "last.ckpt").write_bytes(b"")
    cfg = OmegaConf.create({"ckpt_path": None, "resume": True, "run_dir": str(tmp_path)})
    assert resume_checkpoint(cfg, checkpoints) == str(checkpoints / "last.ckpt")
    hpc = tmp_path / "hpc_ckpt_1.ckpt"  # what Lightning saves when SLURM signals the time limit
    hpc.write_bytes(b"")
    os.utime(hpc, ns=(os.stat(checkpoints / "last.ckpt").st_mtime_ns + 10**9,) * 2)
    assert resume_checkpoint(cfg, checkpoints) == str(hpc)
