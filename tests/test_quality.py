"""The quality measure and `python -m fststyle.evaluate` on fixed tiny inputs."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from fststyle.evaluate import main as evaluate_main
from fststyle.stylefile import export_transformer
from fststyle.nets.transformer import TransformerConfig, TransformerNet
from fststyle.nets.vgg import LossNetwork
from fststyle.quality import QualityMeter


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return LossNetwork("vgg16", "random", layers=["relu4_3"])


def test_identity_has_content_zero_and_style_image_has_style_zero(network):
    torch.manual_seed(1)
    style, photo = torch.rand(1, 3, 48, 64), torch.rand(2, 3, 40, 40)
    meter = QualityMeter(network, style)
    assert meter.content_distance(photo, photo).abs().max() < 1e-6
    assert meter.style_distance(style).abs().max() < 1e-6
    d = meter(photo.flip(-1) * 0.5, photo)  # something else: both distances clearly positive
    assert d["style"].shape == d["content"].shape == (2,)
    assert (d["style"] > 0.05).all() and (d["content"] > 0.05).all()


def test_distances_grow_with_the_difference(network):
    torch.manual_seed(2)
    photo = torch.rand(1, 3, 40, 40)
    meter = QualityMeter(network, torch.rand(1, 3, 40, 40))
    small, large = (meter.content_distance((photo + s * torch.randn_like(photo)).clamp(0, 1), photo) for s in (0.05, 0.3))
    assert 0 < small.item() < large.item()


def test_needs_a_vgg16_to_relu4_3():
    with pytest.raises(ValueError, match="VGG16 up to relu4_3"):
        QualityMeter(LossNetwork("vgg16", "random", layers=["relu2_2"]), torch.rand(1, 3, 16, 16))


def test_evaluate_writes_grid_and_tables(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, size in enumerate([(48, 32), (40, 40)]):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    style = tmp_path / "style.png"
    Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(style)
    torch.manual_seed(0)
    tiny = TransformerConfig(base_channels=8, residual_blocks=1)
    models = [export_transformer(TransformerNet(tiny), tmp_path / f"{n}.safetensors", {"name": n, "image": str(style)}) for n in "ab"]
    out = tmp_path / "eval"
    code = evaluate_main([f"first={models[0]}", str(models[1]), "--photos", str(photos), "--out", str(out),
                          "--size", "48", "--weights", "random"])
    assert code == 0
    grid = Image.open(out / "grid.jpg")
    assert grid.height > 2 * 320 and grid.width > 3 * 320  # 2 photos x (photo + 2 models), 320 px high cells
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["model"] for r in rows] == ["first", "b"] * 3
    assert rows[-1]["photo"] == "(mean)"
    data = json.loads((out / "metrics.json").read_text())
    assert len(data["rows"]) == 4 and len(data["mean"]) == 2
    assert all(0 < r["content"] and 0 < r["style"] and r["seconds"] > 0 for r in data["rows"])
    printed = capsys.readouterr().out
    assert "first" in printed and "(mean)" in printed and "grid.jpg" in printed


def test_evaluate_errors_are_one_line(tmp_path, capsys):
    assert evaluate_main(["no_such_style", "--photos", str(tmp_path), "--weights", "random"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_real_vgg_photo_is_far_from_the_painting(vgg16_caffe, chicago, starry_night):
    """With the real Caffe VGG16: a photo is its own content (0) and far from Starry Night in style."""
    from fststyle.style import load_image

    meter = QualityMeter(LossNetwork("vgg16", str(vgg16_caffe), layers=["relu4_3"]), load_image(starry_night, 256))
    photo = load_image(chicago, 256)
    assert meter.content_distance(photo, photo).item() < 1e-6
    assert meter.style_distance(photo).item() > 0.5
    assert meter.style_distance(load_image(starry_night, 256)).item() < 1e-6


def test_evaluate_measures_each_style_of_a_multi_style_file_and_flicker(tmp_path, capsys):
    rng = np.random.default_rng(1)
    photo = tmp_path / "p.png"
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(photo)
    style = tmp_path / "style.png"
    Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(style)
    torch.manual_seed(0)
    multi = TransformerConfig(base_channels=8, residual_blocks=1, styles=2)
    styles = [{"name": n, "image": str(style)} for n in ("a", "b")]
    model = export_transformer(TransformerNet(multi), tmp_path / "m.safetensors", {"name": "m", "styles": styles})
    out = tmp_path / "eval"
    code = evaluate_main([str(model), "--photos", str(photo), "--out", str(out), "--size", "56", "--weights", "random",
                          "--flicker", "--pan", "1,3"])
    assert code == 0
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["m:a", "m:b"]
    assert all(r["flicker"] > 0 and r["input_flicker"] > 0 for r in rows)  # the clip's noise, at least
    assert "flicker" in capsys.readouterr().out
    assert evaluate_main([str(model), "--photos", str(photo), "--pan", "2"]) == 2
