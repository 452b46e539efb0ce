"""The wheel is a tool: configs and shipped styles inside, console scripts that train and stylize from anywhere.

Builds the wheel offline, installs it with --no-deps into a fresh virtual environment that sees this
environment's packages, and runs the console scripts from a folder outside the checkout.
"""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fststyle import zoo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True)
    (path,) = out.glob("fststyle-*.whl")
    return path


def test_wheel_holds_every_config_and_shipped_style(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"fststyle/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    styles = {f"fststyle/zoo/{p.name}" for p in zoo.ZOO_DIR.glob("*.safetensors")}
    assert len(configs) > 20 and len(styles) >= 6
    assert not configs - names, sorted(configs - names)
    assert not styles - names, sorted(styles - names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "fststyle-train = fststyle.cli:train_main" in scripts and "fststyle-infer = fststyle.cli:infer_main" in scripts


def test_installed_console_scripts_work_outside_the_checkout(wheel, tmp_path, coco_dir, vgg16_caffe, starry_night):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    bin_dir = venv / "bin"
    if sys.prefix != sys.base_prefix:  # the suite runs in a virtualenv: --system-site-packages sees the base Python,
        # not this venv's packages (hydra, torch, ...), so the new venv is pointed at them too
        import site
        import sysconfig

        inner = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
        inner.mkdir(parents=True, exist_ok=True)
        (inner / "outer_venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    work = tmp_path / "project"  # a user's own folder: no conf/, no train.py
    work.mkdir()
    env = dict(os.environ, FSSTYLE_CACHE=str(tmp_path / "cache"), WANDB_MODE="disabled", HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)

    def run(*args):
        return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=work, env=env, capture_output=True, text=True)

    where = run("python", "-c", "import fststyle.cli as c; print(c.__file__); print(c.config_dir())")
    assert str(venv) in where.stdout.splitlines()[0], where.stdout  # the wheel's copy, not the checkout's
    assert where.stdout.splitlines()[1].startswith(str(venv))

    photo = work / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(photo)
    styled = run("fststyle-infer", f"ckpt={zoo.names()[0]}", f"input={photo}", "output=styled.jpg")
    assert styled.returncode == 0, styled.stderr
    assert Image.open(work / "styled.jpg").size == (56, 40)

    photos = work / "photos"
    photos.mkdir()
    for src in sorted(coco_dir.glob("*.jpg"))[:12]:
        (photos / src.name).symlink_to(src)
    trained = run(
        "fststyle-train", f"style.image={starry_night}", "data=folder", f"data.path={photos}", f"loss.weights={vgg16_caffe}",
        "logger=none", "trainer.max_steps=3", "data.image_size=64", "data.num_workers=0", "model.base_channels=8",
        "model.residual_blocks=1", "precision=fp32",
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (work / "exports" / "starry_night.safetensors").is_file()
    assert (work / "outputs" / "starry_night" / "checkpoints" / "last.ckpt").is_file()
