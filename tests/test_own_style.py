"""Your own painting is a first-class style: named after its file, no other style's checksum, no silent overwrite."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from safetensors import safe_open

from fststyle.errors import UserError
from fststyle.style import checksum_for
from fststyle.train.run import train
from tests.badimages import photo, photo_folder
from tests.test_reliability_training import TINY

ROOT = Path(__file__).resolve().parents[1]
UNNAMED = [o for o in TINY if not o.startswith("style.name=")]


def compose_train(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


@pytest.mark.parametrize(
    "overrides, name",
    [
        ([], "starry_night"),
        (["style.image=/photos/my_painting.jpg"], "my_painting"),
        (["style.image=https://example.com/art/sunflowers.png"], "sunflowers"),
        (["style.image=/photos/my_painting.jpg", "style.name=mine"], "mine"),
        (["style=custom", "style.image=/photos/my_painting.jpg"], "my_painting"),
        (["style=wave", "style.image=/styles/${style.name}.jpg"], "wave"),  # docs/cloud.md's multirun pattern
        (["style.image=/styles/starry_night.jpg"], "starry_night"),
    ],
)
def test_the_style_is_named_after_its_picture(overrides, name):
    cfg = compose_train(*overrides, hydra=True)
    assert cfg.style.name == name
    assert cfg.hydra.run.dir == f"outputs/{name}"  # the run folder follows the name


def test_a_config_checksum_only_checks_its_own_download():
    assert checksum_for(compose_train().style) == compose_train().style.sha256
    assert checksum_for(compose_train("style.image=/photos/my_painting.jpg").style) is None
    assert checksum_for(compose_train("style=custom", "style.image=/p.jpg").style) is None
    with pytest.raises(Exception, match="image"):  # style=custom without a picture
        str(compose_train("style=custom").style.image)


def test_own_painting_trains_exports_and_never_silently_replaces(tmp_path):
    photos = photo_folder(tmp_path / "photos", 8)
    mine, other = tmp_path / "my_painting.jpg", tmp_path / "elsewhere" / "my_painting.jpg"
    other.parent.mkdir()
    photo(64, 64, 1).save(mine)
    photo(64, 64, 2).save(other)  # same file name, another picture
    exports = tmp_path / "exports"

    def run(image: Path, *extra: str):
        return train(compose_train(*UNNAMED, f"style.image={image}", f"data.path={photos}", f"run_dir={tmp_path / 'run'}",
                                   f"export_dir={exports}", "trainer.max_steps=1", "resume=true", *extra))

    path = run(mine)
    assert path == exports / "my_painting.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["style"] == "my_painting" and meta["style_image"] == str(mine)
    before = path.read_bytes()
    with pytest.raises(UserError, match="refusing to replace it"):
        run(other, "trainer.max_steps=2")
    assert path.read_bytes() == before  # nothing lost
    assert run(other, "trainer.max_steps=2", "overwrite=true") == path
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["style_image"] == str(other)
