"""Photos as phones store them: all 8 EXIF orientations come out upright, a Display P3 profile becomes sRGB."""
import struct

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from fststyle.images import ORIENTATION, load_image, output_exif, upright_srgb
from fststyle.images import read_array as read_image
from fststyle.nets.transformer import TransformerConfig, TransformerNet
from fststyle.stylefile import export_transformer
from fststyle.train.data import square_crop

# What a viewer does to the stored pixels for each orientation (Pillow's own table in ImageOps.exif_transpose)
SHOW = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
# ...and its inverse, to make the stored file from the upright picture
STORE = {**SHOW, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def upright_picture(w=48, h=32) -> Image.Image:
    """No symmetry: a gradient plus a red corner, so any wrong turn or flip shows."""
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 90)], -1).astype(np.uint8)
    a[:6, :10] = (250, 10, 10)
    return Image.fromarray(a)


def stored_with_orientation(path, orientation: int, upright: Image.Image) -> None:
    stored = upright if STORE[orientation] is None else upright.transpose(STORE[orientation])
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "fststyle test camera"  # Make: must survive into the output
    stored.save(path, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_is_read_upright(tmp_path, orientation):
    upright = upright_picture()
    path = tmp_path / f"o{orientation}.png"
    stored_with_orientation(path, orientation, upright)
    expected = np.asarray(upright)
    assert np.array_equal(read_image(path, None), expected)  # infer.py
    assert np.array_equal((load_image(path)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), expected)  # style, Gatys
    with Image.open(path) as im:
        crop = square_crop(im, 32, None)  # training data: the centred square of the upright picture
    assert np.abs(crop.astype(int) - expected[:, 8:40].astype(int)).max() <= 2


def test_infer_writes_upright_and_keeps_exif(tmp_path):
    from hydra import compose, initialize_config_dir

    from fststyle.infer.run import run
    from tests.test_infer import ROOT

    torch.manual_seed(0)
    style = export_transformer(TransformerNet(TransformerConfig(base_channels=8, residual_blocks=1)), tmp_path / "s.safetensors", {"name": "s"})
    src = tmp_path / "phone.jpg"
    stored_with_orientation(src, 6, upright_picture(48, 32))  # stored 32x48 portrait, shown 48x32 landscape
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("infer", overrides=[f"ckpt={style}", f"input={src}", f"output={tmp_path / 'out.jpg'}", "precision=fp32"])
    run(cfg)
    with Image.open(tmp_path / "out.jpg") as out:
        assert out.size == (48, 32)
        exif = out.getexif()
    assert exif.get(ORIENTATION) == 1 and exif.get(0x010F) == "fststyle test camera"
    assert output_exif(tmp_path / "nothing.jpg") is None


def p3_profile() -> bytes:
    """A minimal ICC v2 RGB matrix/TRC display profile with Display P3 primaries (D50-adapted), gamma 2.2."""
    def xyz(x, y, z):
        return b"XYZ " + bytes(4) + struct.pack(">3i", *(round(v * 65536) for v in (x, y, z)))

    desc_text = b"Display P3 (test)\x00"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(desc_text)) + desc_text + bytes(4 + 4 + 2 + 1 + 67)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(2.2 * 256)) + bytes(2)
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(0.5151, 0.2412, -0.0011)),
            (b"gXYZ", xyz(0.2920, 0.6922, 0.0419)), (b"bXYZ", xyz(0.1571, 0.0666, 0.7841)),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = struct.pack(">I4sI4s4s4s12s4s4sI4s4s8sI12s4s16s28s", size, b"none", 0x02100000, b"mntr", b"RGB ", b"XYZ ",
                         bytes(12), b"acsp", b"APPL", 0, b"none", b"none", bytes(8), 0,
                         struct.pack(">3i", *(round(v * 65536) for v in (0.9642, 1.0, 0.8249))), b"none", bytes(16), bytes(28))
    return header + struct.pack(">I", len(tags)) + table + data


def test_display_p3_photo_becomes_srgb(tmp_path):
    profile = p3_profile()
    assert "Display P3" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(__import__("io").BytesIO(profile)))
    pixels = np.array([[[200, 40, 40], [128, 128, 128], [40, 180, 60]]], dtype=np.uint8)
    path = tmp_path / "p3.png"
    Image.fromarray(pixels).save(path, icc_profile=profile)
    got = read_image(path, None).astype(int)
    red, grey, green = got[0]
    assert red[0] > 200 + 5 and red[1] < 40  # P3 red is redder than sRGB's: more saturated in sRGB numbers
    assert green[1] > 180 and green[0] < 40
    assert np.abs(grey - 128).max() <= 3  # same white point and gamma: grey stays grey
    with Image.open(path) as im:
        assert "icc_profile" not in upright_srgb(im).info  # the pixels are sRGB now, untagged
    # an sRGB-tagged photo is left as it is
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(pixels).save(tmp_path / "srgb.png", icc_profile=srgb)
    assert np.array_equal(read_image(tmp_path / "srgb.png", None), pixels)
