"""The quality measure and `python -m fststyle.evaluate` on fixed tiny inputs."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from fststyle.evaluate import main as evaluate_main
from fststyle.measures.quality import QualityMeter
from fststyle.nets.transformer import TransformerConfig, TransformerNet
from fststyle.nets.vgg import LossNetwork
from fststyle.stylefile import export_transformer


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
    assert "first" in printed and "(mean)" in printed and "grid.jpg" in printed and "edge" in printed


def test_evaluate_errors_are_one_line(tmp_path, capsys):
    assert evaluate_main(["no_such_style", "--photos", str(tmp_path), "--weights", "random"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_real_vgg_photo_is_far_from_the_painting(vgg16_caffe, chicago, starry_night):
    """With the real Caffe VGG16: a photo is its own content (0) and far from Starry Night in style."""
    from fststyle.images import load_image

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


def test_per_layer_distances_average_to_the_style_distance(network):
    torch.manual_seed(3)
    meter = QualityMeter(network, torch.rand(1, 3, 40, 40))
    images = torch.rand(2, 3, 40, 40)
    feats = meter.features(images)
    layers = meter.style_layers_from(feats)
    assert layers.shape == (2, 4) and (layers > 0).all()
    assert torch.allclose(layers.mean(1), meter.style_from(feats))


def test_weave_measure_sees_a_period_4_ripple_and_not_smooth_texture():
    from fststyle.measures.weave import WeaveMeter, band_stats

    torch.manual_seed(4)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=(128, 128), mode="bicubic", align_corners=False).clamp(0, 1)
    texture = (smooth + 0.05 * torch.randn(1, 3, 128, 128)).clamp(0, 1)  # fine, but not periodic
    yy, xx = torch.meshgrid(torch.arange(128), torch.arange(128), indexing="ij")
    woven = (smooth + 0.05 * torch.sin(2 * torch.pi * xx / 4) + 0.05 * torch.sin(2 * torch.pi * yy / 4)).clamp(0, 1)
    peaks = {name: band_stats(im)[1] for name, im in [("texture", texture), ("woven", woven)]}
    assert peaks["woven"] > 10 * peaks["texture"], peaks
    share, _ = WeaveMeter(texture)(woven)  # energy at 2-6 px against a painting with fine noise texture
    assert 0 < share < 10


def test_grid_measure_counts_a_pattern_locked_to_the_4px_grid_and_not_the_photos_own_stripes():
    from fststyle.measures.weave import grid_added, grid_lines

    torch.manual_seed(5)
    yy, xx = torch.meshgrid(torch.arange(192), torch.arange(256), indexing="ij")
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 8), size=(192, 256), mode="bicubic", align_corners=False)
    windows = 0.1 * torch.sin(2 * torch.pi * xx / 5.8)  # a skyline's window columns: periodic, not the grid
    photo = (smooth + windows + 0.03 * torch.randn(1, 3, 192, 256)).clamp(0, 1)[0]
    photo_lines = grid_lines(photo)
    assert grid_added(photo, photo_lines) == 0
    painted = (photo + 0.05 * torch.randn(3, 192, 256) + 0.1 * windows).clamp(0, 1)  # texture, stripes painted harder
    sawtooth = (xx % 4).float() / 3 - 0.5
    woven = (photo + 0.04 * sawtooth * (yy.float() / 192)).clamp(0, 1)  # a grid whose strength follows a gradient
    assert grid_added(painted, photo_lines) < 0.2
    assert grid_added(woven, photo_lines) > 0.5


def test_edge_measure_sees_stripes_painted_along_a_border_and_not_a_photos_busy_border():
    from fststyle.measures.edges import edge_ratios, edge_stripes

    torch.manual_seed(6)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 8), size=(192, 256), mode="bicubic", align_corners=False)
    photo = (smooth + 0.02 * torch.randn(1, 3, 192, 256)).clamp(0, 1)
    painted = (photo + 0.05 * torch.randn(1, 3, 192, 256)).clamp(0, 1)  # texture everywhere, the border too
    xx = torch.arange(256).float()
    stripes = photo.clone()
    stripes[..., :10] += 0.3 * torch.sin(2 * torch.pi * xx[:10] / 3)  # vertical lines along the left edge
    stripes = stripes.clamp(0, 1)
    photo_ratios = edge_ratios(photo)
    assert edge_stripes(photo, photo_ratios) <= 1.0 and edge_stripes(painted, photo_ratios) < 1.3
    assert edge_stripes(stripes, photo_ratios) > 2.0
    assert edge_ratios(stripes)[0] > 2.0 and edge_ratios(stripes)[1:].max() < 1.3  # the left edge, and only it
    street = photo.clone()
    yy = torch.arange(12).float()[:, None]
    street[..., -12:, :] += 0.3 * torch.sin(2 * torch.pi * yy / 3)  # the photo's own busy bottom edge, kept by the output
    street = street.clamp(0, 1)
    assert edge_ratios(street)[3] > 2.0 and edge_stripes(street, edge_ratios(street)) <= 1.0
    assert torch.isnan(edge_ratios(torch.rand(1, 3, 40, 40))).all()  # too small to have an interior


def test_evaluate_measures_existing_outputs_matched_by_name(tmp_path, capsys):
    rng = np.random.default_rng(1)
    photos, styles, theirs = tmp_path / "photos", tmp_path / "styles", tmp_path / "theirs"
    for d in (photos, styles, theirs):
        d.mkdir()
    picture = lambda w, h: Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))  # noqa: E731
    picture(48, 32).save(photos / "city.png")
    picture(40, 40).save(photos / "city_night.png")  # a photo whose name starts like another's
    for style in ("wave", "wave_big"):
        picture(30, 30).save(styles / f"{style}.jpg")
    picture(96, 64).save(theirs / "city_wave_eccv16.jpg")  # another size: compared at the photo's
    picture(40, 40).save(theirs / "city_night_wave_big.jpg")
    picture(40, 40).save(theirs / "unrelated.jpg")
    out = tmp_path / "eval"
    assert evaluate_main(["--outputs", f"them={theirs}", "--photos", str(photos), "--styles", str(styles), "--out", str(out),
                          "--size", "48", "--weights", "random"]) == 0
    rows = [r for r in json.loads((out / "metrics.json").read_text())["rows"]]
    assert {(r["model"], r["photo"]) for r in rows} == {("them:wave_eccv16", "city.png"), ("them:wave_big", "city_night.png")}
    assert all(r["relu4_3"] > 0 and r["weave"] > 0 and r["style"] > 0 and r["stroke"] >= 2 and 0 < r["paint"] <= 1 for r in rows)
    assert "relu4_3" in capsys.readouterr().out
    assert evaluate_main(["--outputs", f"them={tmp_path / 'none'}", "--photos", str(photos), "--styles", str(styles), "--weights", "random"]) == 2
    assert evaluate_main(["--outputs", f"them={theirs}", "--photos", str(photos), "--weights", "random"]) == 2
    assert evaluate_main(["--photos", str(photos), "--weights", "random"]) == 2


def test_stroke_period_reads_the_size_of_what_is_painted_over_the_photo():
    from fststyle.measures.strokes import stroke_period

    torch.manual_seed(7)
    photo = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 8), size=(192, 256), mode="bicubic", align_corners=False).clamp(0, 1)
    yy, xx = torch.meshgrid(torch.arange(192), torch.arange(256), indexing="ij")
    for period in (4, 16):
        stripes = (0.7 * photo + 0.1 + 0.05 * torch.sin(2 * torch.pi * (xx + yy) / (period * 2 ** 0.5))).clamp(0, 1)
        assert abs(stroke_period(stripes, photo) / period - 1) < 0.15, (period, stroke_period(stripes, photo))
    dabs = {size: torch.nn.functional.interpolate(torch.rand(1, 1, 192 // size, 256 // size), size=(192, 256), mode="nearest")
            for size in (3, 12)}  # flat square dabs of random shade, 3 and 12 px across
    fine, coarse = (stroke_period((photo + 0.1 * (dabs[s] - 0.5)).clamp(0, 1), photo) for s in (3, 12))
    assert 2 * fine < coarse, (fine, coarse)
    assert stroke_period(0.5 * photo + 0.2, photo) != stroke_period(0.5 * photo + 0.2, photo)  # NaN: nothing painted


def test_painted_share_tells_a_filtered_photo_from_a_painted_one():
    from fststyle.measures.strokes import painted_share

    torch.manual_seed(8)
    photo = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 8), size=(96, 128), mode="bicubic", align_corners=False).clamp(0, 1)
    dabs = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 16), size=(96, 128), mode="nearest")
    assert painted_share(0.6 * photo + 0.3, photo) < 1e-6  # re-toned: brighter, flatter, nothing painted
    faint, bold = (painted_share(((1 - a) * photo + a * dabs).clamp(0, 1), photo) for a in (0.1, 0.8))
    assert faint < 0.2 < 0.8 < bold, (faint, bold)
    assert painted_share(torch.full_like(photo, 0.5), photo) != painted_share(torch.full_like(photo, 0.5), photo)  # NaN
