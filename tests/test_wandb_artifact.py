"""logger=wandb logs the exported style as a model artifact and the final sample grid (wandb offline, no network)."""
import time
from pathlib import Path

import pytest
import wandb

from fststyle.train.run import train
from tests.badimages import photo, photo_folder
from tests.test_own_style import UNNAMED, compose_train


def wandb_records(run_dir: Path, timeout: float = 60.0) -> bytes:
    """wandb's transaction log of the run, once its service process has finished writing it (on a busy
    machine that can trail ``wandb.finish()``: a CI run once read the bare 8-byte header)."""
    (log,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    deadline, last = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        size = log.stat().st_size
        if size == last and size > 8:
            break
        last = size
        time.sleep(1.0)
    return log.read_bytes()


@pytest.mark.parametrize("log_model", [True, False])
def test_export_is_a_model_artifact(tmp_path, monkeypatch, log_model):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    photos = photo_folder(tmp_path / "photos", 6)
    style = tmp_path / "my_painting.jpg"
    photo(64, 64, 1).save(style)
    run_dir = tmp_path / "run"
    overrides = [o for o in UNNAMED if not o.startswith("logger=")]
    path = train(compose_train(*overrides, "logger=wandb", f"logger.log_model={str(log_model).lower()}", f"style.image={style}",
                               f"data.path={photos}", f"run_dir={run_dir}", f"export_dir={tmp_path / 'exports'}",
                               "trainer.max_steps=2"))
    assert path.name == "my_painting.safetensors"
    wandb.finish()  # as the end of the process does: the run's records are written out
    records = wandb_records(run_dir)
    # the export's metadata (its format string) reaches wandb only through the artifact
    assert (b"fststyle.transformer/1" in records and b"model" in records) == log_model
    assert b"samples" in records  # the final sample grid is always written (issue 19), to disk and to wandb
    assert (run_dir / "samples").is_dir()
