"""The shipped styles: every file loads, says how it was made, stylizes a photo, and is found by name."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fststyle import zoo
from fststyle.errors import UserError
from fststyle.infer.stylizer import Stylizer
from fststyle.stylefile import load_transformer, read_meta

ROOT = Path(__file__).resolve().parents[1]
NAMES = zoo.names()
TRAINING_KEYS = {"steps", "images_seen", "image_size", "machine", "wall_time_s", "precision"}


def test_the_zoo_holds_six_styles_in_one_folder_each_small():
    assert len(NAMES) >= 6, NAMES
    for name in NAMES:
        path = zoo.ZOO_DIR / f"{name}.safetensors"
        assert path.stat().st_size <= 4 * 2**20, (name, path.stat().st_size)


@pytest.mark.parametrize("name", NAMES)
def test_each_style_loads_describes_itself_and_stylizes(name):
    path = zoo.ZOO_DIR / f"{name}.safetensors"
    styles = read_meta(path).style_names  # a multi-style file: checked through its first style
    net, meta = load_transformer(path, styles[0] if styles else None)
    assert meta.style == (styles[0] if styles else name)
    assert meta.style_image.startswith("https://") and len(meta.style_sha256) == 64
    training = meta.training
    assert TRAINING_KEYS <= training.keys() and training["steps"] > 0, training
    assert meta.fststyle_version
    assert all(p.dtype == torch.float32 for p in net.parameters())  # stored fp16, loaded as fp32
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (36, 52, 3), dtype=np.uint8))
    out = Stylizer(net)(photo)
    assert out.size == photo.size
    assert np.abs(np.asarray(out, np.float32) - np.asarray(photo, np.float32)).mean() > 10  # it does something


def test_names_resolve_and_unknown_names_list_the_zoo(tmp_path):
    path, label = zoo.resolve_model(NAMES[0])
    assert path == zoo.ZOO_DIR / f"{NAMES[0]}.safetensors" and label == NAMES[0]
    with pytest.raises(UserError, match="shipped styles: " + ", ".join(NAMES)):
        zoo.resolve_model("van_gogh_sunflowers")
    with pytest.raises(UserError, match="no such file"):
        zoo.resolve_model(str(tmp_path / "missing.safetensors"))


def test_infer_by_name_and_list(tmp_path):
    src = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "out.jpg"
    env = dict(os.environ, FSSTYLE_CACHE=str(tmp_path / "cache"))

    def run(*args):
        return subprocess.run([sys.executable, "infer.py", *args], cwd=ROOT, capture_output=True, text=True, env=env)

    proc = run(f"ckpt={NAMES[0]}", f"input={src}", f"output={out}")
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (60, 40)
    listing = run("ckpt=list")
    assert listing.returncode == 0 and all(name in listing.stdout for name in NAMES)
    unknown = run("ckpt=nope", f"input={src}", f"output={tmp_path / 'x.jpg'}")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().count("\n") == 0 and NAMES[0] in unknown.stderr


def test_the_recipe_names_the_terms_that_shape_the_look():
    from fststyle.zoo import recipe

    config = {"loss": {"content_layers": {"relu3_3": 1.0}, "style_layers": {"relu4_3": 1.0}, "lattice_weight": 1e8,
                       "lattice_taper": True, "coarse_style_weight": 1.0},
              "style": {"weight": 0.14, "size": 384, "layers": {"relu4_3": 1e5}}, "optim": {"lr": 1e-3, "schedule": "cosine"}}
    line = recipe(config)
    assert "style.weight 0.14" in line and "relu4_3 x100000" in line
    assert "lattice_weight 1e+08 tapered" in line and "coarse_style_weight 1" in line
    config["loss"]["coarse_style_weight"] = 0.0
    assert "coarse" not in recipe(config) and "border" not in recipe(config)
    config["loss"]["border_reflect"] = 16
    assert "border_reflect 16" in recipe(config)
    assert "ripple" not in recipe(config)
    config["loss"]["ripple_weight"] = 2e5
    assert "ripple_weight 200000 (peak 100)" in recipe(config)
    assert recipe(config).startswith("content relu3_3, ")  # a layer at weight 1 needs no factor
    config["loss"]["content_layers"] = {"relu2_2": 3.0, "relu3_3": 1.0}  # feathers' last runs
    assert recipe(config).startswith("content relu2_2 x3 + relu3_3, ")


def test_the_recipe_listing_says_when_the_wall_time_covers_only_a_resumed_part(monkeypatch, capsys):
    rows = [{"name": "a", "recipe": "r", "steps": 3400, "wall_time_s": 1250, "resumed_at_step": 2600, "machine": "CPU"},
            {"name": "b", "recipe": "r", "steps": 600, "wall_time_s": 900, "resumed_at_step": None, "machine": "CPU"}]
    monkeypatch.setattr(zoo, "describe", lambda: rows)
    assert zoo.main([]) == 0
    a, b = capsys.readouterr().out.splitlines()
    assert "1250 s for steps 2600-3400 on" in a
    assert "900 s on" in b and "for steps" not in b


def test_the_listing_gives_a_fine_tuned_models_last_run_and_its_name_every_run(monkeypatch, capsys):
    from fststyle.zoo import recipe

    config = {"loss": {"content_layers": {"relu3_3": 1.0}, "distill_weight": 1e7}, "style": {"weight": 3.0, "size": 384},
              "optim": {"lr": 1e-3}, "teacher": "mosaic (mosaic_ft(2).safetensors)"}
    lines = [recipe(config)]
    for weight, steps in ((2.5, 800), (2.0, 300)):  # each fine-tune nests the recipe of the file it started from
        lines.append(recipe({**config, "style": {"weight": weight, "size": 384}, "init_from_record": {"steps": steps, "recipe": lines[-1]}}))
    assert zoo.lineage(lines[0]) == [lines[0]]
    runs = zoo.lineage(lines[-1])
    assert [r.split(zoo.FINE_TUNED)[0] for r in runs] == [r.split(zoo.FINE_TUNED)[0] for r in reversed(lines)]
    assert runs[0].endswith("fine-tuned from a 300-step network") and runs[1].endswith("from a 800-step network")
    assert "mosaic (mosaic_ft(2).safetensors)" in runs[2] and "fine-tuned" not in runs[2]

    rows = [{"name": "a_lite", "recipe": lines[-1], "steps": 200}, {"name": "b", "recipe": lines[0], "steps": 600}]
    monkeypatch.setattr(zoo, "describe", lambda: rows)
    assert zoo.main([]) == 0
    a, b = capsys.readouterr().out.splitlines()
    assert a.startswith(f"a_lite: {runs[0]} (2 earlier runs: python -m fststyle.zoo a_lite); 200 steps")
    assert b.startswith(f"b: {lines[0]}; 600 steps")
    assert zoo.main(["a_lite"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [f"  {i}. {r}" for i, r in enumerate(runs, 1)]
    assert zoo.main(["nope"]) == 2
    assert "no shipped style 'nope'" in capsys.readouterr().err


def test_the_recipe_listing_leaves_out_what_a_record_does_not_say():
    assert zoo.provenance({"steps": 40, "image_size": 256, "data": "photos/"}) == "40 steps at 256 px on photos/"
    full = {"steps": 600, "batch": 4, "image_size": 256, "data": "coco", "precision": "32-true", "wall_time_s": 900,
            "machine": "CPU"}
    assert zoo.provenance(full) == "600 steps x batch 4 at 256 px on coco, 32-true, 900 s on CPU"


def test_the_listing_piped_into_a_reader_that_left_ends_without_a_traceback():
    """``python -m fststyle.zoo | head -1``: head closes the pipe before the listing is written."""
    listing = subprocess.Popen([sys.executable, "-m", "fststyle.zoo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    listing.stdout.close()  # nobody reads any more: every write the listing makes fails
    err = listing.stderr.read().decode()
    assert listing.wait() == 1 and err == "", err
