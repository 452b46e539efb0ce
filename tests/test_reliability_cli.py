"""Issue 7.6: every user mistake is one `error: ...` line, a non-zero exit and no stack trace.

The command lines run concurrently (one module fixture) to keep CI time small.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fststyle.nets.transformer import TransformerConfig, TransformerNet
from fststyle.stylefile import export_transformer
from tests.badimages import make_bad_folder, photo, photo_folder
from tests.test_reliability_files import hostile_file

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.base_channels=8", "model.residual_blocks=1", "data.image_size=64", "data.num_workers=0", "logger=none"]


def cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (command line, text the error line must contain)."""
    photos = photo_folder(tmp / "photos", 3, 80, 64)
    style = tmp / "style.jpg"
    photo(64, 64, 9).save(style)
    junk = make_bad_folder(tmp / "junk", only_bad=True)
    (tmp / "garbage.pth").write_bytes(os.urandom(4096))
    torch.save({"features.0.weight": torch.zeros(1)}, tmp / "vgg_like.ckpt")
    torch.save(  # a training checkpoint of a 16-channel net, resumed by a run configured for 8
        {"state_dict": {}, "hyper_parameters": {"model": {"base_channels": 16, "residual_blocks": 1, "upsample": "nearest"}}},
        tmp / "other_arch.ckpt",
    )
    net = TransformerNet(TransformerConfig(base_channels=8, residual_blocks=1))
    good = export_transformer(net, tmp / "tiny.safetensors", {"name": "tiny"})
    hostile_file(tmp / "evil.ckpt", tmp / "pwned")

    def train(*args: str, **_) -> list[str]:
        run = tmp / f"run_{len(args)}_{abs(hash(args))}"
        base = [f"run_dir={run}", f"hydra.run.dir={run}", f"export_dir={run}/exports", *TINY]
        return ["train.py", *base, *args]

    folder = ["data=folder", f"data.path={photos}", f"style.image={style}", "loss.weights=random"]
    infer = ["infer.py", f"input={photos / '0.jpg'}", f"output={tmp / 'out.jpg'}"]
    return {
        "unknown style": (train("style=no_such_style"), "style=no_such_style: no such style; available: candy,"),
        "unknown style (infer)": ([*infer, "method=optimize", "style=nope"], "no such style; available:"),
        "missing style image": (train(*folder, f"style.image={tmp / 'missing.jpg'}"), "style.image: no such file"),
        "style URL, no network": (
            train(*folder, "style.image=http://127.0.0.1:9/starry_night.jpg"), "could not download style image"
        ),
        "bad data.path": (train(*folder, f"data.path={tmp / 'nowhere'}"), "is not a folder"),
        "nothing readable": (train(*folder, f"data.path={junk}"), "could be read as an image"),
        "Hub dataset, no network": (train(*folder[2:], "data=coco"), "cannot stream 'detection-datasets/coco'"),
        "unreadable loss.weights": (train(*folder, f"loss.weights={tmp / 'garbage.pth'}"), "loss.weights"),
        "missing loss.weights": (train(*folder, f"loss.weights={tmp / 'none.pth'}"), "loss.weights: no such file"),
        "resume another architecture": (
            train(*folder, f"ckpt_path={tmp / 'other_arch.ckpt'}"), "another architecture (model.base_channels=16"
        ),
        "infer ckpt of another kind": ([*infer, f"ckpt={tmp / 'vgg_like.ckpt'}"], "not an fststyle training checkpoint"),
        "infer hostile ckpt": ([*infer, f"ckpt={tmp / 'evil.ckpt'}"], "not a readable checkpoint"),
        "export hostile ckpt": (["-m", "fststyle.export", str(tmp / "evil.ckpt"), str(tmp / "x")], "not a readable"),
        "infer works": ([*infer, f"ckpt={good}"], ""),
    }


# Through the real command line (concurrently): the wrapper that turns UserError into one line and exit 2.
# Every other case goes through the same wrapper, so it is checked in-process (below) to keep CI fast.
SUBPROCESS = ["unknown style", "unknown style (infer)", "bad data.path", "infer hostile ckpt", "export hostile ckpt"]


@pytest.fixture(scope="module")
def tmp_cases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    return tmp, cases(tmp)


@pytest.fixture(scope="module")
def results(tmp_cases):
    tmp, todo = tmp_cases
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)

    def start(cmd, **extra_env):
        return subprocess.Popen(
            [sys.executable, *cmd], cwd=ROOT, env={**env, **extra_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    procs = {name: start(todo[name][0]) for name in SUBPROCESS}
    # its own run folder: two trainings into one folder at once are refused (tests/test_reliability_runs.py)
    traced = [a.replace("/run_", "/traced_run_") for a in todo["bad data.path"][0]]
    procs["HYDRA_FULL_ERROR=1"] = start(traced, HYDRA_FULL_ERROR="1")
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[name] = (proc.returncode, stdout.decode(), stderr.decode(), todo.get(name, (None, None))[1])
    out["marker"] = (tmp / "pwned").exists()
    return out


@pytest.mark.parametrize("name", SUBPROCESS)
def test_one_clear_line_nonzero_exit_no_trace(results, name):
    code, stdout, stderr, expected = results[name]
    errors = [line for line in (stdout + stderr).splitlines() if line.startswith("error: ")]
    assert code == 2, (stdout + stderr)[-3000:]
    assert len(errors) == 1 and expected in errors[0], (stdout + stderr)[-3000:]
    assert "Traceback" not in stdout + stderr and "HYDRA_FULL_ERROR" not in stdout + stderr


def test_hostile_checkpoints_ran_no_code(results):
    assert results["marker"] is False


def test_full_trace_on_request(results):
    code, stdout, stderr, _ = results["HYDRA_FULL_ERROR=1"]
    assert code != 0 and "Traceback" in stderr and "is not a folder" in stderr


IN_PROCESS = [
    "missing style image", "style URL, no network", "nothing readable", "Hub dataset, no network",
    "unreadable loss.weights", "missing loss.weights", "resume another architecture", "infer ckpt of another kind",
]


@pytest.mark.parametrize("name", IN_PROCESS)
def test_user_error_is_one_clear_line(tmp_cases, name, monkeypatch):
    """The same command lines, run in-process: each mistake raises UserError with a one-line message."""
    from hydra import compose, initialize_config_dir

    from fststyle.errors import UserError

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _, todo = tmp_cases
    cmd, expected = todo[name]
    script, overrides = cmd[0], [a for a in cmd[1:] if not a.startswith("hydra.")]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(script.removesuffix(".py"), overrides=overrides)
    if script == "train.py":
        from fststyle.train.run import train as run
    else:
        from fststyle.infer.run import run
    with pytest.raises(UserError) as e:
        run(cfg)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_the_good_path_still_works(tmp_cases, capsys):
    from hydra import compose, initialize_config_dir

    from fststyle.infer.run import run

    cmd, _ = tmp_cases[1]["infer works"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        assert run(compose("infer", overrides=cmd[1:])).is_file()
