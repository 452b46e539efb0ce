"""One training per run folder, checkpoints one generation back, never a NaN kept, resume at a new lr, a
collapsed network stopped. Tiny trainings (tests/test_reliability_training.py's settings)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from fststyle.errors import UserError
from fststyle.train.run import train
from fststyle.train.safety import AtomicCheckpointIO, RunLock, previous_generation
from tests.test_reliability_training import ckpt_state, config, overrides, photos, start_training, style_image  # noqa: F401


def test_a_second_training_into_the_same_run_folder_refuses(tmp_path, photos, style_image):  # noqa: F811
    run = tmp_path / "run"
    first = start_training(run, photos, style_image, "trainer.max_steps=400", "checkpoint_every=1000")
    try:
        lock = run / ".lock"
        for _ in range(600):
            if lock.is_file() and lock.read_text():
                break
            assert first.poll() is None, first.communicate()[0].decode()[-2000:]
            __import__("time").sleep(0.1)
        owner = json.loads(lock.read_text())
        assert owner["pid"] == first.pid
        with pytest.raises(UserError, match=f"in use by another training \\(pid {first.pid}"):
            train(config(overrides(run, photos, style_image, "trainer.max_steps=2")))
    finally:
        first.kill()
        first.wait()
    # kill -9 left the lock behind: it is stale now, and the next run takes it over
    assert (run / ".lock").is_file()
    cfg = config(overrides(run, photos, style_image, "trainer.max_steps=2", "resume=true", "checkpoint_every=1000"))
    assert train(cfg).is_file()
    assert not (run / ".lock").exists()  # released at the end


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename, "started": "then"}))
    with RunLock(tmp_path) as lock:
        assert lock.held and json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert "stale lock" in caplog.text and not (tmp_path / ".lock").exists()


def test_checkpoints_keep_one_generation_and_never_save_non_finite_weights(tmp_path, caplog):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    for step in (1, 2):
        io.save_checkpoint({"global_step": step, "state_dict": {"w": torch.ones(2)}}, path)
    assert ckpt_state(path)["global_step"] == 2 and ckpt_state(previous_generation(path))["global_step"] == 1
    io.save_checkpoint({"global_step": 3, "state_dict": {"w": torch.tensor([1.0, math.nan])}}, path)
    assert ckpt_state(path)["global_step"] == 2 and "NaN/Inf" in caplog.text  # the good one stays


def test_a_broken_newest_checkpoint_falls_back_to_the_one_before(tmp_path, photos, style_image, caplog):  # noqa: F811
    run = tmp_path / "run"
    train(config(overrides(run, photos, style_image, "trainer.max_steps=4", "checkpoint_every=2")))
    last = run / "checkpoints" / "last.ckpt"
    assert ckpt_state(previous_generation(last))["global_step"] == 2
    last.write_bytes(last.read_bytes()[:1000])  # truncated, as a full disk leaves it
    assert train(config(overrides(run, photos, style_image, "trainer.max_steps=6", "checkpoint_every=2", "resume=true",
                                  "overwrite=true"))).is_file()
    assert "resuming from the one before it" in caplog.text
    assert ckpt_state(last)["global_step"] == 6


def test_resume_uses_the_lr_given_now(tmp_path, photos, style_image, caplog):  # noqa: F811
    run = tmp_path / "run"
    train(config(overrides(run, photos, style_image, "trainer.max_steps=2", "checkpoint_every=2", "optim.schedule=constant")))
    train(config(overrides(run, photos, style_image, "trainer.max_steps=4", "checkpoint_every=2", "resume=true",
                           "optim.schedule=constant", "optim.lr=1e-5", "overwrite=true")))
    assert "resuming with optim.lr=1e-05 (the checkpoint was training at 0.001)" in caplog.text
    groups = ckpt_state(run / "checkpoints" / "last.ckpt")["optimizer_states"][0]["param_groups"]
    assert groups[0]["lr"] == pytest.approx(1e-5)


def test_collapsed_outputs_stop_the_run(tmp_path, photos, style_image, monkeypatch):  # noqa: F811
    from fststyle.nets.transformer import TransformerNet

    real = TransformerNet.forward
    monkeypatch.setattr(TransformerNet, "forward", lambda self, x: real(self, x) * 0 + 0.5)  # one grey, whatever the photo
    run = tmp_path / "run"
    with pytest.raises(UserError, match="collapsed to a flat image"):
        train(config(overrides(run, photos, style_image, "trainer.max_steps=4", "trainer.val_check_interval=2")))
    assert not (run / "exports").exists() or not list((run / "exports").iterdir())


def test_ctrl_c_saves_a_checkpoint_and_prints_the_resume_command(tmp_path, photos, style_image):  # noqa: F811
    import signal
    import time

    run = tmp_path / "run"
    proc = start_training(run, photos, style_image, "trainer.max_steps=400", "checkpoint_every=1000")
    deadline = time.monotonic() + 240
    while not list((run / "logs").glob("version_*/metrics.csv")) or (run / "logs").stat().st_size == 0:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0].decode()[-2000:]
        time.sleep(0.2)
    time.sleep(3)  # a few steps in
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 130, out[-3000:]
    assert "Ctrl-C: saved" in out and "to continue: python train.py" in out and out.rstrip().count("resume=true") >= 1, out[-3000:]
    assert "Traceback" not in out
    state = ckpt_state(run / "checkpoints" / "last.ckpt")
    assert state["global_step"] >= 1 and not (run / "exports").exists()
