"""Every config composes, with the public override names of the issues."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
# the paintings; custom: tests/test_own_style.py, multi: tests/test_multistyle.py
STYLES = sorted(p.stem for p in (CONF / "style").glob("*.yaml") if p.stem not in ("custom", "multi"))
REQUIRED = ["starry_night", "the_scream", "wave", "candy", "mosaic", "udnie", "la_muse", "composition_vii", "feathers", "rain_princess"]


def compose_train(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=["run_dir=/tmp/x", *overrides])


def test_all_required_styles_exist():
    assert set(REQUIRED) <= set(STYLES)


def test_multi_lists_conf_styles():
    cfg = compose_train(["style=multi", "style.names=[wave,candy]"])
    assert cfg.style.name == "multi" and list(cfg.style.names) == ["wave", "candy"] and set(cfg.style.names) <= set(STYLES)


@pytest.mark.parametrize("style", STYLES)
def test_style_config_composes(style):
    cfg = compose_train([f"style={style}"])
    assert cfg.style.name == style
    assert cfg.style.image.startswith("https://raw.githubusercontent.com/") and cfg.style.image.endswith(f"/{style}.jpg")
    assert len(cfg.style.sha256) == 64 and cfg.style.size > 0 and cfg.style.weight > 0


@pytest.mark.parametrize("style", STYLES)
def test_style_checksums_match_the_shared_images(style):
    from tests.conftest import STYLES as SHARED_STYLES

    sums = SHARED_STYLES / "SHA256SUMS"
    if not sums.exists():
        pytest.skip("../shared absent")
    expected = dict(reversed(line.split()) for line in sums.read_text().splitlines())
    assert compose_train([f"style={style}"]).style.sha256 == expected[f"{style}.jpg"]


def test_public_overrides():
    cfg = compose_train([
        "style=wave", "style.image=/x.jpg", "style.weight=7", "style.size=384",
        "data=folder", "data.path=/photos", "data.image_size=128", "data.batch_size=8",
        "loss.network=vgg19", "loss.weights=caffe", "trainer.max_steps=5", "logger=csv", "export_dir=out",
    ])
    assert (cfg.style.image, cfg.style.weight, cfg.style.size) == ("/x.jpg", 7, 384)
    assert (cfg.data.source, cfg.data.path, cfg.data.image_size, cfg.data.batch_size) == ("folder", "/photos", 128, 8)
    assert (cfg.loss.network, cfg.loss.weights, cfg.trainer.max_steps, cfg.export_dir) == ("vgg19", "caffe", 5, "out")
    assert cfg.logger._target_.endswith("CSVLogger")


@pytest.mark.parametrize("logger", ["wandb", "csv", "none"])
def test_loggers_compose(logger):
    OmegaConf.to_container(compose_train([f"logger={logger}"]), resolve=True)


def test_defaults_follow_johnson():
    cfg = compose_train([])
    assert cfg.data.source == "hub" and cfg.data.name == "detection-datasets/coco"
    assert (cfg.data.image_size, cfg.data.batch_size) == (256, 4)
    assert cfg.loss.network == "vgg16" and cfg.loss.weights == "torchvision"
    assert list(cfg.loss.content_layers) == ["relu3_3"]  # Johnson's code (content layer 16 of the Torch VGG16)
    assert list(cfg.loss.style_layers) == ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    assert cfg.optim.lr == 1e-3 and cfg.model.residual_blocks == 5


def test_a_style_file_sets_its_recipes_loss_options():
    """starry_night, the_scream, mosaic and la_muse train with the coarse style term, as their shipped files did; the
    command line still wins over the style file, and the other styles and your own painting leave it off."""
    for style in ("starry_night", "the_scream", "mosaic", "la_muse"):
        assert compose_train([f"style={style}"]).loss.coarse_style_weight == 1
    assert compose_train(["style=la_muse", "loss.coarse_style_weight=0"]).loss.coarse_style_weight == 0
    assert compose_train(["style=la_muse", "loss=vgg19"]).loss.coarse_style_weight == 1  # style comes after loss
    for others in (["style=wave"], ["style=custom", "style.image=/tmp/mine.jpg"], ["style=multi", "style.names=[wave,la_muse]"]):
        assert compose_train(others).loss.coarse_style_weight == 0


@pytest.mark.parametrize("style", ["starry_night", "the_scream", "la_muse"])
def test_style_file_reproduces_the_shipped_recipe(style):
    """The three shipped files trained from scratch with the coarse term record the balance their conf file composes."""
    import json

    from safetensors import safe_open

    with safe_open(str(CONF.parent / "fststyle" / "zoo" / f"{style}.safetensors"), "pt") as f:
        shipped = json.loads(f.metadata()["config"])
    cfg = compose_train([f"style={style}"])
    for key in ("weight", "balance", "size", "layers"):
        assert OmegaConf.to_container(cfg.style)[key] == shipped["style"][key], key
    assert cfg.loss.coarse_style_weight == shipped["loss"]["coarse_style_weight"]


def test_style_entry_reads_both_layouts():
    """style=multi reads each name's conf/style file: a root-level one (style: + loss:) gives its style part."""
    from fststyle.config import style_entry

    assert style_entry("la_muse")["weight"] == 2.5e5 and style_entry("wave")["weight"] == 1.0
    assert style_entry("la_muse")["name"] == "la_muse" and "loss" not in style_entry("la_muse")
