"""Tiling seam bound, colour preservation and strength, the Python API."""
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fststyle import Stylizer
from fststyle.infer.color import luminance
from fststyle.infer.tiling import tile_starts
from fststyle.nets.transformer import TransformerConfig, TransformerNet


def smooth_photo(h=176, w=240, seed=0) -> torch.Tensor:
    """A photo-like test image: smooth colour fields plus a little texture."""
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(1, 3, 6, 8, generator=g), size=(h, w), mode="bicubic", align_corners=False)
    return (base + 0.05 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return TransformerNet().eval()


def test_tiled_matches_untiled(net):
    """The issue's bound: tiled vs untiled MAE < 2/255 on an image that fits untiled (6 tiles of 128 px)."""
    image = smooth_photo()
    untiled = Stylizer(net)(image)
    tiled = Stylizer(net, tile=128, overlap=64)(image)
    assert tiled.shape == untiled.shape
    mae = (tiled - untiled).abs().mean().item()
    assert mae < 2 / 255, mae * 255
    # per-tile statistics (what naive tiling does) are far off: the bound is not trivially met
    naive = torch.cat([Stylizer(net)(image[..., :, :120]), Stylizer(net)(image[..., :, 120:])], dim=-1)
    assert (naive - untiled).abs().mean().item() > 3 * mae


def test_tiled_matches_untiled_with_bilinear_upsampling():
    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(upsample="bilinear")).eval()
    image = smooth_photo()
    mae = (Stylizer(net, tile=128, overlap=64)(image) - Stylizer(net)(image)).abs().mean().item()
    assert mae < 2 / 255, mae * 255


@pytest.mark.parametrize("skips", [False, True])
def test_tiled_matches_untiled_on_2x2_blocks(skips):
    """The lite network runs on 2x2 pixel blocks: its tiles are tiles of the space-to-depth image, 8-px aligned.
    With skips the encoder's outputs are needed whole by the decoder: the statistics passes run the whole network."""
    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(base_channels=16, residual_blocks=2, end_kernel=3, block=2, skips=skips)).eval()
    for p in net.parameters():
        p.data += 0.05 * torch.randn_like(p)  # away from the initial norms' (1, 0), as after training
    image = smooth_photo(176, 250)
    untiled = Stylizer(net)(image)
    tiled = Stylizer(net, tile=128, overlap=64)(image)
    assert tiled.shape == untiled.shape == image.shape
    mae = (tiled - untiled).abs().mean().item()
    assert mae < 2 / 255, mae * 255
    naive = torch.cat([Stylizer(net)(image[..., :, :128]), Stylizer(net)(image[..., :, 128:])], dim=-1)
    assert (naive - untiled).abs().mean().item() > 3 * mae
    downscaled = Stylizer(net, tile=128, overlap=64, tile_stats="downscaled")(image)
    assert downscaled.shape == image.shape


def test_downscaled_stats_option_runs(net):
    out = Stylizer(net, tile=128, overlap=64, tile_stats="downscaled")(smooth_photo(150, 181))
    assert out.shape == (1, 3, 150, 181) and 0 <= out.min() and out.max() <= 1


def test_tile_starts_cover_and_align():
    for length in (300, 1000, 4000):
        starts = tile_starts(length, 256, 64)
        assert starts[0] == 0 and starts[-1] + 256 == length and all(s % 4 == 0 for s in starts)
        assert all(b - a <= 256 - 64 for a, b in zip(starts, starts[1:]))


def chroma(x):
    y = luminance(x)
    return torch.cat([x[:, 2:3] - y, x[:, 0:1] - y], 1)  # Cb, Cr up to scale


def test_preserve_color_keeps_content_chroma(net):
    content = smooth_photo(64, 80, seed=1) * 0.6 + 0.2  # away from 0/1 so clipping stays out of the way
    plain = Stylizer(net)(content)
    kept = Stylizer(net, preserve_color=True)(content)
    assert (chroma(kept) - chroma(content)).abs().mean() < 0.01
    assert (chroma(plain) - chroma(content)).abs().mean() > 0.05
    assert (luminance(kept) - luminance(plain)).abs().mean() < 0.02  # the style's luminance is kept


def test_strength_blends(net):
    content = smooth_photo(64, 80)
    full = Stylizer(net)(content)
    assert torch.allclose(Stylizer(net, strength=0.0)(content), content, atol=1e-6)
    assert torch.allclose(Stylizer(net, strength=0.25)(content), content + 0.25 * (full - content), atol=1e-5)


def test_api_pil_and_batches(net, tmp_path):
    from fststyle.stylefile import export_transformer

    path = export_transformer(net, tmp_path / "s.safetensors", {"name": "s"})
    stylizer = Stylizer.from_checkpoint(path)
    out = stylizer(Image.new("RGB", (33, 21), (200, 30, 40)))
    assert isinstance(out, Image.Image) and out.size == (33, 21)
    batch = torch.rand(3, 3, 24, 28)
    assert stylizer(batch).shape == batch.shape
    assert torch.allclose(stylizer(batch)[1], stylizer(batch[1:2])[0], atol=1e-5)
    assert Stylizer.from_checkpoint(path, precision="bf16")(batch).dtype == torch.float32


def test_import_fststyle_is_cheap():
    import subprocess
    import sys

    code = "import sys, fststyle; assert 'torch' not in sys.modules; from fststyle import Stylizer; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "config",
    [
        TransformerConfig(),
        TransformerConfig(upsample="bilinear"),
        TransformerConfig(end_kernel=7),
        TransformerConfig(base_channels=16, residual_blocks=2, end_kernel=3),  # the lite shape
        TransformerConfig(base_channels=16, residual_blocks=2, end_kernel=3, block=2),
    ],
    ids=["johnson", "bilinear", "kernel7", "lite", "blocks"],
)
def test_bands_equal_the_whole_pass(config):
    """Bands are exact: every band, whatever its height, is the untiled network's rows (float rounding only),
    for the network as trained and for its faster inference form."""
    from fststyle.infer.bands import stylize_banded
    from fststyle.infer.rewrite import faster_equivalent

    torch.manual_seed(0)
    net = TransformerNet(config).eval()
    for p in net.parameters():
        p.data += 0.05 * torch.randn_like(p)
    image = smooth_photo(200, 248)
    with torch.inference_mode():
        whole = net(image)
        for form in (net, faster_equivalent(net)):
            for rows in (8, 36, 1000):
                assert (stylize_banded(form, image, rows) - whole).abs().max() < 1e-5


def test_stylizer_pieces_are_bands(net):
    """Above the tile size the Stylizer's exact statistics come from bands: the untiled picture, not a seam bound."""
    image = smooth_photo()
    assert (Stylizer(net, tile=128)(image) - Stylizer(net)(image)).abs().max() < 1e-5
    for rewrite in (True, False):  # bf16, in the faster form and as trained
        whole = Stylizer(net, precision="bf16", rewrite=rewrite)(image)
        assert (Stylizer(net, precision="bf16", tile=128, rewrite=rewrite)(image) - whole).abs().mean() < 1 / 255


def test_moments_merge_bands_exactly():
    """The band statistics: Chan's merge of per-band centred sums equals one pass over the whole, far from zero too."""
    from fststyle.infer.bands import Moments

    x = 30 + 2 * torch.randn(2, 5, 37, 41, dtype=torch.float64).float()
    moments = Moments()
    for a in range(0, 37, 10):
        moments.add(x[:, :, a:a + 10])
    mean, var = moments.result()
    var_ref, mean_ref = torch.var_mean(x.double(), dim=(-2, -1), correction=0)
    assert torch.allclose(mean, mean_ref, rtol=1e-6) and torch.allclose(var, var_ref, rtol=1e-5)


def test_transposed_upsampling_goes_in_tiles():
    """No band form for a fractionally strided convolution: such a network keeps the tiles' per-norm passes."""
    from fststyle.infer.bands import supports

    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(upsample="transpose")).eval()
    assert not supports(net) and supports(TransformerNet())
    image = smooth_photo()
    mae = (Stylizer(net, tile=128, overlap=64)(image) - Stylizer(net)(image)).abs().mean().item()
    assert mae < 2 / 255, mae * 255
