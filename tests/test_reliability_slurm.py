"""Issue 7.3: SLURM requeue is configured through Lightning, and resume finds its checkpoint."""
import os
import signal
import time

from lightning_fabric.plugins.environments import SLURMEnvironment

from fststyle.train.safety import cluster_plugins, latest_checkpoint


def test_requeue_on_sigusr1_only_under_slurm(monkeypatch):
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    assert cluster_plugins(True) == []
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    (env,) = cluster_plugins(True)
    assert isinstance(env, SLURMEnvironment) and env.auto_requeue and env.requeue_signal == signal.SIGUSR1
    assert cluster_plugins(False)[0].auto_requeue is False


def test_resume_takes_the_newest_of_last_and_hpc_checkpoints(tmp_path):
    run, checkpoints = tmp_path, tmp_path / "checkpoints"
    checkpoints.mkdir()
    assert latest_checkpoint(run, checkpoints) is None
    (checkpoints / "last.ckpt").write_bytes(b"1")
    assert latest_checkpoint(run, checkpoints) == checkpoints / "last.ckpt"
    now = time.time()
    os.utime(checkpoints / "last.ckpt", (now - 100, now - 100))
    for n in (2, 10):  # numeric order, not text order
        (run / f"hpc_ckpt_{n}.ckpt").write_bytes(b"2")
        os.utime(run / f"hpc_ckpt_{n}.ckpt", (now - 50, now - 50))
    assert latest_checkpoint(run, checkpoints) == run / "hpc_ckpt_10.ckpt"
    (checkpoints / "last.ckpt").write_bytes(b"3")  # e.g. saved on SIGTERM after the requeue checkpoint
    assert latest_checkpoint(run, checkpoints) == checkpoints / "last.ckpt"
