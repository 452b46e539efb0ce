"""Gatys' optimisation method: optimisers lower the loss, presets compose, options reach the network."""
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from fststyle.errors import UserError
from fststyle.gatys import OptimizeSettings, build_gatys_loss, intermediate_path, optimize_image
from fststyle.infer.run import run_optimize
from fststyle.nets.losses import content_loss, gram_matrix, style_loss
from fststyle.nets.vgg import LossNetwork, layer_names

CONF = str(Path(__file__).resolve().parents[1] / "conf")
LAYER_PRESETS = sorted(p.stem for p in Path(CONF, "layers").glob("*.yaml"))
OPTIMIZE_PRESETS = sorted(p.stem for p in Path(CONF, "optimize").glob("*.yaml"))


def infer_cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("infer", overrides=["method=optimize", "input=in.jpg", "output=out.jpg", *overrides])


def small_images(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    content = torch.rand(1, 3, 48, 64, generator=g)
    style = torch.rand(1, 3, 64, 64, generator=g)
    return content, style


@pytest.fixture(scope="module")
def random_loss():
    """A small random VGG16 with the paper's layers: enough to test that the optimisation works."""
    cfg = infer_cfg("loss.weights=random", "loss.network=vgg16")
    torch.manual_seed(0)
    return build_gatys_loss(cfg.loss)


@pytest.mark.parametrize("optimizer,iterations,lr", [("lbfgs", 5, None), ("adam", 10, 0.01)])
def test_optimizers_lower_the_total_loss(random_loss, optimizer, iterations, lr):
    content, style = small_images()
    settings = OptimizeSettings(iterations=iterations, optimizer=optimizer, lr=lr, init="noise")
    image, history = optimize_image(random_loss, content, style, settings, progress=False)
    assert len(history) == iterations
    assert image.shape == content.shape and 0 <= image.min() and image.max() <= 1
    assert history[-1]["total"] < 0.8 * history[0]["total"], [round(h["total"]) for h in history]


def test_coarse_to_fine_passes_and_callback(random_loss):
    content, style = small_images()
    seen = []
    settings = OptimizeSettings(iterations=[2, 1], scales=[0.5], init="style")
    image, history = optimize_image(random_loss, content, style, settings, lambda i, im: seen.append((i, im.shape[-2:])), progress=False)
    assert [i for i, _ in seen] == [1, 2, 3] and len(history) == 3
    assert seen[0][1] == (24, 32) and seen[-1][1] == (48, 64) and image.shape == content.shape


@pytest.mark.parametrize("preset", LAYER_PRESETS)
def test_each_layer_preset_composes(preset):
    loss = infer_cfg(f"layers={preset}").loss
    assert loss.content_layers and loss.style_layers
    for network in ("vgg16", "vgg19"):  # every preset works with the paper's VGG19 and the Caffe VGG16
        assert set(loss.content_layers) | set(loss.style_layers) <= set(layer_names(network))
    if preset == "partial":  # a preset replaces the paper's layers rather than merging into them
        assert set(loss.style_layers) == {"relu3_1", "relu5_1"}
    if preset == "content_conv5_2":
        assert set(loss.content_layers) == {"relu5_2"}


def test_auto_network_is_vgg19_for_named_weights():
    loss = build_gatys_loss(infer_cfg("layers=partial", "loss.weights=random").loss)
    assert loss.network.network == "vgg19" and set(loss.style_layers) == {"relu3_1", "relu5_1"}


@pytest.mark.parametrize("preset", OPTIMIZE_PRESETS)
def test_each_optimize_preset_composes(preset):
    from fststyle.infer.run import settings_from_config

    settings = settings_from_config(infer_cfg(f"optimize={preset}"))
    assert len(settings.iterations) == len(settings.scales) + 1 and settings.lr > 0


def test_default_is_the_paper():
    cfg = infer_cfg()
    assert cfg.loss.content_layers == {"relu4_2": 1.0}
    assert list(cfg.loss.style_layers) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert len(set(cfg.loss.style_layers.values())) == 1
    assert cfg.loss.network == "auto" and cfg.loss.normalization == "paper"
    assert cfg.optimizer == "lbfgs" and cfg.init == "content"


def test_pooling_swap_changes_the_network():
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    nets = {}
    for pooling in ("max", "avg"):
        torch.manual_seed(0)
        nets[pooling] = build_gatys_loss(infer_cfg("loss.weights=random", "loss.network=vgg16", f"loss.pooling={pooling}").loss).network
    kinds = {p: {type(m).__name__ for m in n.features} for p, n in nets.items()}
    assert "MaxPool2d" in kinds["max"] and "AvgPool2d" not in kinds["max"]
    assert "AvgPool2d" in kinds["avg"] and "MaxPool2d" not in kinds["avg"]
    a, b = (nets[p](image, ["relu3_1"])["relu3_1"] for p in ("max", "avg"))
    assert not torch.allclose(a, b)


def test_paper_normalisation_matches_the_formulas():
    f, p = torch.rand(1, 8, 4, 5), torch.rand(1, 8, 4, 5)
    assert torch.allclose(content_loss(f, p, "paper"), 0.5 * ((f - p) ** 2).sum())
    raw = lambda x: x.reshape(8, 20) @ x.reshape(8, 20).T  # noqa: E731 - Gatys' G = F Fᵀ
    n, m = 8, 20
    expected = ((raw(f) - raw(p)) ** 2).sum() / (4 * n**2 * m**2)
    assert torch.allclose(style_loss(gram_matrix(f), gram_matrix(p), "paper"), expected)
    assert torch.allclose(style_loss(gram_matrix(f), gram_matrix(p)), ((gram_matrix(f) - gram_matrix(p)) ** 2).mean())


def test_auto_network_reads_vgg16_from_a_weights_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "vgg16.pth"
    torch.save(LossNetwork("vgg16", "random", ["pool5"]).features.state_dict(), path)
    assert LossNetwork("auto", str(path), ["relu5_1"]).network == "vgg16"
    torch.save({"0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="neither vgg16"):
        LossNetwork("auto", str(tmp_path / "bad.pth"), ["relu5_1"])


@pytest.mark.parametrize("override,message", [
    ("optimizer=sgd", "optimizer must be"), ("init=zeros", "init must be"), ("scales=[2]", "scales are fractions"),
    ("iterations=[1,2]", "one per pass"), ("loss.normalization=l1", "loss.normalization"), ("save_every=0", "save_every"),
])
def test_bad_options_are_user_errors(tmp_path, starry_night, override, message):
    src = tmp_path / "in.png"
    Image.new("RGB", (32, 32)).save(src)
    cfg = infer_cfg(f"input={src}", f"output={tmp_path / 'out.png'}", f"style.image={starry_night}",
                    "loss.weights=random", "loss.network=vgg16", override)
    with pytest.raises(UserError, match=message):
        run_optimize(cfg)


def test_cli_run_with_caffe_vgg16_writes_intermediates(tmp_path, vgg16_caffe, starry_night, chicago, capsys):
    out = tmp_path / "out.jpg"
    cfg = infer_cfg(f"input={chicago}", f"output={out}", f"style.image={starry_night}", f"loss.weights={vgg16_caffe}",
                    "size=64", "iterations=4", "save_every=2")
    assert run_optimize(cfg) == out
    assert "on vgg16" in capsys.readouterr().out  # network=auto picked VGG16 from the file
    with Image.open(out) as im:
        assert max(im.size) == 64
    assert intermediate_path(out, 2).is_file() and intermediate_path(out, 4).is_file()
    with pytest.raises(UserError, match="exists"):  # no silent overwrite, checked before any work
        run_optimize(cfg)


def test_folder_input_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="one image"):
        run_optimize(infer_cfg(f"input={tmp_path}", f"output={tmp_path / 'out.jpg'}"))


def test_too_small_passes_are_user_errors(random_loss):
    content, style = small_images()
    with pytest.raises(UserError, match="short side below 16"):
        optimize_image(random_loss, content, style, OptimizeSettings(iterations=1, scales=[0.25]), progress=False)


def test_bf16_vgg_passes_end_no_worse_than_fp32(vgg16_caffe, starry_night, chicago):
    """precision=auto may run the VGG passes in bf16: the final loss must stay within 2% of fp32's (or below it)."""
    from fststyle.gatys import resize_long_side
    from fststyle.images import load_image

    loss = build_gatys_loss(infer_cfg(f"loss.weights={vgg16_caffe}").loss)
    content, style = resize_long_side(load_image(chicago), 96), load_image(starry_night, 256)
    final = {}
    for precision in ("fp32", "bf16"):
        _, history = optimize_image(loss, content, style, OptimizeSettings(iterations=30, precision=precision), progress=False)
        final[precision] = history[-1]["total"]
    assert final["bf16"] <= 1.02 * final["fp32"], final


def test_precision_auto_is_resolved_for_the_settings(monkeypatch):
    from fststyle import hardware
    from fststyle.infer.run import settings_from_config

    monkeypatch.setattr(hardware, "cpu_info", lambda: ("Test CPU", frozenset({"amx_bf16"})))
    assert settings_from_config(infer_cfg()).precision == "bf16"
    assert settings_from_config(infer_cfg("precision=fp32")).precision == "fp32"
    with pytest.raises(UserError, match="precision"):
        settings_from_config(infer_cfg("precision=fp8"))


def test_the_optimiser_starts_without_importing_torch_dynamo():
    """torch.optim's first optimizer imports torch._dynamo (seconds of start-up); optimize_image steps around it."""
    import subprocess
    import sys

    script = (
        "import sys, torch\n"
        "from fststyle.gatys import OptimizeSettings, optimize_image\n"
        "from fststyle.nets.losses import PerceptualLoss\n"
        "from fststyle.nets.vgg import LossNetwork\n"
        "torch.manual_seed(0)\n"
        "net = LossNetwork('vgg16', 'random', layers=['relu2_2', 'relu3_3'])\n"
        "loss = PerceptualLoss(net, {'relu3_3': 1.0}, {'relu2_2': 1.0}, style_weight=1e3)\n"
        "image, history = optimize_image(loss, torch.rand(1, 3, 48, 48), torch.rand(1, 3, 48, 48),\n"
        "                                OptimizeSettings(iterations=3), progress=False)\n"
        "assert history[-1]['total'] < history[0]['total'], history\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
