"""A new user's first commands: no wandb account, your own painting with its own recipe."""
import pytest

from fststyle.cli import own_painting_overrides
from fststyle.train.run import build_logger, wandb_needs_offline
from tests.test_own_style import compose_train


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["style.image=my.jpg", "data=folder"], ["style=custom", "style.image=my.jpg", "data=folder"]),
        (["style=wave", "style.image=wave.jpg"], ["style=wave", "style.image=wave.jpg"]),  # the zoo's own recipe
        (["style=custom", "style.image=my.jpg"], ["style=custom", "style.image=my.jpg"]),
        (["style.weight=2"], ["style.weight=2"]),
        ([], []),
    ],
)
def test_style_image_alone_is_the_custom_recipe(argv, expected):
    assert own_painting_overrides(argv) == expected


def test_the_custom_recipe_names_no_other_style():
    style = compose_train(*own_painting_overrides(["style.image=/photos/my_painting.jpg"])).style
    custom = compose_train("style=custom", "style.image=/x.jpg").style
    assert style.name == "my_painting" and style.url is None and style.sha256 is None
    assert (style.weight, dict(style.layers)) == (custom.weight, dict(custom.layers))


def test_wandb_without_credentials_goes_offline(tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    assert wandb_needs_offline({"NETRC": str(netrc)})  # no netrc file at all
    netrc.write_text("machine example.com login a password b\n")
    netrc.chmod(0o600)
    assert wandb_needs_offline({"NETRC": str(netrc)})
    netrc.write_text("machine api.wandb.ai login user password 0123456789\n")
    assert not wandb_needs_offline({"NETRC": str(netrc)})
    assert not wandb_needs_offline({"NETRC": str(tmp_path / "none"), "WANDB_API_KEY": "k"})
    assert not wandb_needs_offline({"NETRC": str(tmp_path / "none"), "WANDB_MODE": "disabled"})


def test_the_default_logger_works_without_an_account(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    logger = build_logger(compose_train(f"run_dir={tmp_path}"))
    assert logger._offline
    assert "anonymous" not in logger._wandb_init  # wandb warns about a setting Lightning passes as None
    line = capsys.readouterr().out
    assert "logging offline" in line and f"wandb sync {tmp_path}/wandb/offline-run-*" in line


@pytest.mark.parametrize("src, dst, why", [
    ("photo.jpg", "out.txt", ".txt is not an image format"),
    ("photo.jpg", "out.xyz", ".xyz is not an image format"),
    ("photo.jpg", "out", "no extension is not an image format"),
    ("photo.jpg", "out.mp4", ".mp4 is not an image format"),
    ("clip.mp4", "out.png", "a video is written to a video file"),
])
def test_the_output_format_is_checked_before_any_work(tmp_path, src, dst, why):
    from fststyle.errors import UserError
    from fststyle.infer.run import check_output_format

    with pytest.raises(UserError, match=why):
        check_output_format(tmp_path / src, tmp_path / dst)
    check_output_format(tmp_path / src, tmp_path / ("ok.png" if src.endswith(".jpg") else "ok.webm"))


def test_a_wrong_output_format_is_one_error_line_and_writes_nothing(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from tests.badimages import photo

    photo(64, 48, 1).save(tmp_path / "photo.jpg")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "infer.py"), "ckpt=starry_night", f"input={tmp_path / 'photo.jpg'}",
                          f"output={tmp_path / 'x.txt'}"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"error: output={tmp_path / 'x.txt'}: .txt is not an image format fststyle can "
                                               "write; allowed: .jpg, .png, .webp, .tif, .bmp and the other formats Pillow writes"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def run_cli(script: str, *args: str, cwd=None):
    import subprocess
    import sys

    env = {**__import__("os").environ, "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd or ROOT, capture_output=True, text=True, env=env)


@pytest.mark.parametrize("script, args, message", [
    ("train.py", ["trainer.max_step=5"], "trainer.max_step: no such option in this config; did you mean trainer.max_steps?"),
    ("train.py", ["loss.style_weight=3"], "did you mean style.weight?"),
    ("train.py", ["data.image_size=abc"], "data.image_size must be a whole number >= 32, got 'abc'"),
    ("train.py", ["data.image_size=0"], "data.image_size must be a whole number >= 32, got 0"),
    ("train.py", ["data.batch_size=0"], "data.batch_size must be a whole number >= 1, got 0"),
    ("train.py", ["style.size=abc"], "style.size must be a whole number >= 16 or null"),
    ("train.py", ["style.weight=abc"], "style.weight must be a number"),
    ("train.py", ["loss.phase_jitter=-1"], "loss.phase_jitter must be a whole number >= 0, got -1"),
    ("train.py", ["loss.border_reflect=2.5"], "loss.border_reflect must be a whole number >= 0, got 2.5"),
    ("train.py", ["loss.lattice_taper=maybe"], "loss.lattice_taper must be true or false, got 'maybe'"),
    ("train.py", ["model.base_channels=abc"], "model.base_channels must be a whole number >= 1, got 'abc'"),
    ("train.py", ["model=lite", "model.block=1.5"], "model.block must be a whole number >= 1, got 1.5"),
    ("train.py", ["model=lite", "model.end_kernel=4"], "model.end_kernel must be odd, got 4"),
    ("train.py", ["model=lite", "model.skips=maybe"], "model.skips must be true or false, got 'maybe'"),
    ("train.py", ["loss.coarse_style_weight=-1"], "loss.coarse_style_weight must be a number between 0 and inf, got -1"),
    ("train.py", ["loss.ripple_weight=-1"], "loss.ripple_weight must be a number between 0 and inf, got -1"),
    ("train.py", ["loss.ripple_peak=0.5"], "loss.ripple_peak must be a number between 1 and inf, got 0.5"),
    ("train.py", ["speed.keep_freed_memory=maybe"], "speed.keep_freed_memory must be true or false, got 'maybe'"),
    ("infer.py", ["ckpt=starry_night", "input=x.jpg", "output=y.jpg", "style_mix={bad"], "style_mix={bad: not a valid option"),
    ("infer.py", ["ckpt=starry_night", "input=x.jpg", "output=y.jpg", "size=-5"], "size must be a whole number >= 16 or null, got -5"),
    ("infer.py", ["ckpt=starry_night", "input=x.jpg", "output=y.jpg", "size=abc"], "size must be a whole number >= 16 or null, got 'abc'"),
    ("infer.py", ["ckpt=starry_night", "input=x.jpg", "output=y.jpg", "strength=abc"], "strength must be a number between 0 and 1"),
    ("infer.py", ["ckpt=starry_night", "input=x.jpg"], "output=PATH is missing"),
])
def test_bad_options_are_one_line_and_leave_nothing(tmp_path, script, args, message):
    proc = run_cli(script, *args, "logger=csv" if script == "train.py" else "overwrite=false", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert proc.stderr.strip() == f"error: {proc.stderr.strip()[7:]}" and "\n" not in proc.stderr.strip(), proc.stderr
    assert message in proc.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/ folder, no log, no file


def test_lightning_noise_is_silenced_and_its_real_news_kept(caplog):
    import logging
    import warnings

    from fststyle.train.run import quiet_lightning

    quiet_lightning()
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    with caplog.at_level(logging.INFO):
        for line in ("GPU available: False, used: False", "TPU available: False, using: 0 TPU cores",
                     "Using bfloat16 Automatic Mixed Precision (AMP)", "`Trainer.fit` stopped: `max_steps=3` reached.",
                     "`Trainer(val_check_interval=1)` was configured so validation will run after every batch.",
                     "GPU available: True (cuda), used: True"):
            rank_zero.info(line)
    assert [r.getMessage() for r in caplog.records] == ["GPU available: True (cuda), used: True"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_lightning()  # after simplefilter, as a caller's own filters would be
        warnings.warn("The number of training batches (6) is smaller than the logging interval Trainer(log_every_n_steps=25).")
        warnings.warn("something else")
    assert [str(w.message) for w in caught] == ["something else"]
