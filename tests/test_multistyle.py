"""Many styles in one network (conditional instance norm): shapes, blends, files, infer.py, training and init_from."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from fststyle.errors import UserError
from fststyle.nets.losses import PerceptualLoss
from fststyle.nets.transformer import TransformerConfig, TransformerNet
from fststyle.nets.vgg import LossNetwork
from fststyle.stylefile import export_transformer, load_network, load_transformer, read_meta, style_mix
from tests.test_infer import infer, picture

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["starry_night", "wave", "candy"]
SMALL = {"base_channels": 8, "residual_blocks": 1}


def multi_net(styles: int = 3, seed: int = 0) -> TransformerNet:
    torch.manual_seed(seed)
    net = TransformerNet(TransformerConfig(**SMALL, styles=styles)).eval()
    for norm in net.conditional_norms():  # distinct styles, so a mix-up would show
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.uniform_(-0.5, 0.5)
    return net


@pytest.fixture
def multi_file(tmp_path) -> Path:
    styles = [{"name": n, "image": f"{n}.jpg", "sha256": ""} for n in NAMES]
    return export_transformer(multi_net(), tmp_path / "multi.safetensors", {"name": "multi", "styles": styles})


def test_one_style_is_the_plain_network():
    plain = TransformerNet(TransformerConfig(**SMALL))
    assert not plain.conditional_norms()  # styles=1 keeps nn.InstanceNorm2d: old files load unchanged
    assert TransformerNet(TransformerConfig(**SMALL, styles=1)).state_dict().keys() == plain.state_dict().keys()
    multi = TransformerNet(TransformerConfig(**SMALL, styles=2))
    assert multi.state_dict().keys() == plain.state_dict().keys()  # same names, a row per style in the norms
    assert {k: v.shape[1:] if v.ndim == 2 else v.shape for k, v in multi.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }
    # every style row set to the plain network's norms: the same function
    torch.manual_seed(1)
    for name, module in plain.named_modules():
        if isinstance(module, torch.nn.InstanceNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
    state = {k: v.expand(2, -1).clone() if multi.state_dict()[k].ndim == 2 else v for k, v in plain.state_dict().items()}
    multi.load_state_dict(state)
    x = torch.rand(2, 3, 32, 32)
    multi.select(torch.tensor([0, 1]))
    assert torch.allclose(multi(x), plain(x), atol=1e-6)


def test_a_multi_style_network_needs_a_style():
    with pytest.raises(RuntimeError, match="select"):
        multi_net()(torch.rand(1, 3, 16, 16))


def test_select_single_and_blends():
    net, x = multi_net(), torch.rand(2, 3, 32, 32)
    outs = []
    for i in range(3):
        net.select(i)
        outs.append(net(x))
        assert torch.allclose(net.single(torch.eye(3)[i])(x), outs[-1], atol=1e-6)  # the plain network of style i
    assert (outs[0] - outs[1]).abs().max() > 1e-3
    net.select(torch.tensor([2, 0]))  # a style per image
    both = net(x)
    assert torch.allclose(both[0], outs[2][0], atol=1e-6) and torch.allclose(both[1], outs[0][1], atol=1e-6)
    net.select(torch.tensor([[0.25, 0.75, 0.0]]))  # a blend interpolates the norm parameters
    assert torch.allclose(net(x), net.single([0.25, 0.75, 0.0])(x), atol=1e-6)


def test_file_names_its_styles_and_stays_small(multi_file, tmp_path):
    assert read_meta(multi_file).style_names == NAMES
    single = export_transformer(TransformerNet(TransformerConfig(**SMALL)), tmp_path / "one.safetensors", {"name": "one"})
    assert read_meta(single).style_names == []
    full = export_transformer(multi_net(), tmp_path / "m.safetensors", {"name": "m", "styles": [{"name": n} for n in NAMES]})
    plain = export_transformer(TransformerNet(), tmp_path / "p.safetensors", {"name": "p"})
    assert read_meta(full).style_names == NAMES
    big = export_transformer(TransformerNet(TransformerConfig(styles=6)), tmp_path / "6.safetensors",
                             {"name": "six", "styles": [{"name": str(i)} for i in range(6)]})
    assert big.stat().st_size < 1.1 * plain.stat().st_size


def test_load_picks_and_blends_styles(multi_file):
    net, meta = load_network(multi_file)
    x = torch.rand(1, 3, 32, 32)
    wave, meta = load_transformer(multi_file, "wave")
    assert meta.style == "wave" and wave.config.styles == 1
    net.select(1)
    assert torch.allclose(wave(x), net(x), atol=1e-5)
    # blend endpoints are the pure styles; weights are scaled to sum 1
    end, _ = load_transformer(multi_file, {"wave": 2.0, "candy": 0.0})
    assert torch.allclose(end(x), wave(x), atol=1e-6)
    half, meta = load_transformer(multi_file, {"starry_night": 1, "wave": 1})
    assert meta.style == "starry_night0.5+wave0.5"
    assert torch.allclose(half(x), net.single([0.5, 0.5, 0])(x), atol=1e-5)
    with pytest.raises(UserError, match="carries 3 styles.*starry_night, wave, candy"):
        load_transformer(multi_file)
    with pytest.raises(UserError, match="no style 'udnie'; its styles: starry_night, wave, candy"):
        load_transformer(multi_file, "udnie")
    with pytest.raises(UserError, match="positive sum"):
        style_mix({"wave": -1, "candy": 0.5}, NAMES)


def test_infer_by_style_and_mix_on_every_backend(multi_file, tmp_path):
    photo = picture(tmp_path / "p.png", (48, 40))
    outs = {}
    for backend in ("torch", "openvino"):
        for args in (["style=wave"], ["style_mix={wave: 1.0, candy: 0.0}"], ["style=candy"]):
            out = tmp_path / f"{backend}-{args[0][:9].replace('=', '_')}.png"
            infer(f"ckpt={multi_file}", f"input={photo}", f"output={out}", f"backend={backend}", "precision=fp32", *args)
            outs[backend, args[0][:9]] = torch.from_numpy(np.array(Image.open(out))).float()
    assert (outs["torch", "style=wav"] - outs["openvino", "style=wav"]).abs().max() <= 1
    assert (outs["torch", "style=wav"] - outs["torch", "style_mix"]).abs().max() <= 1  # endpoint of a blend
    assert (outs["torch", "style=wav"] - outs["torch", "style=can"]).abs().mean() > 1
    single = export_transformer(TransformerNet(TransformerConfig(**SMALL)), tmp_path / "one.safetensors", {"name": "one"})
    with pytest.raises(UserError, match="style_mix needs a multi-style file"):
        infer(f"ckpt={single}", f"input={photo}", f"output={tmp_path / 'x.png'}", "style_mix={a: 1, b: 1}")


def test_infer_cli_asks_which_style(multi_file, tmp_path):
    photo = picture(tmp_path / "p.png")
    result = subprocess.run(
        [sys.executable, str(ROOT / "infer.py"), f"ckpt={multi_file}", f"input={photo}", f"output={tmp_path / 'o.png'}"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: multi.safetensors carries 3 styles: pick one with style=NAME")
    assert not (tmp_path / "o.png").exists()


def test_each_image_is_measured_against_its_own_style():
    torch.manual_seed(0)
    network = LossNetwork("vgg16", "random", layers=["relu1_2", "relu2_2"])
    layers = {"content_layers": {"relu2_2": 1.0}, "style_layers": {"relu1_2": 1.0, "relu2_2": 1.0}}
    styles = [torch.rand(1, 3, 48, 48), torch.rand(1, 3, 48, 48) ** 3]
    multi = PerceptualLoss(network, **layers, style_weight=1.0, styles=2, style_weights=[2.0, 0.5])
    for i, image in enumerate(styles):
        multi.set_style(image, i)
    singles = []
    for image, weight in zip(styles, [2.0, 0.5]):
        single = PerceptualLoss(network, **layers, style_weight=weight)
        single.set_style(image)
        singles.append(single)
    out, content = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    got = multi(out, content, style_index=torch.tensor([0, 1]))["style"]
    expected = (singles[0](out[:1], content[:1])["style"] + singles[1](out[1:], content[1:])["style"]) / 2
    assert torch.allclose(got, expected, rtol=1e-5)


# -- a real training run: two styles in one network, then a third added by init_from ---------------------------


def train_config(tmp_path, name: str, *overrides: str, style: str = "multi"):
    from tests.conftest import COCO, STYLES, VGG16_CAFFE, need

    coco, vgg, styles = need(COCO), need(VGG16_CAFFE), need(STYLES)
    args = [
        f"style={style}", "data=folder", f"data.path={coco}", f"loss.weights={vgg}", "logger=csv", "data.image_size=64",
        "data.num_workers=0", "trainer.val_check_interval=2", f"run_dir={tmp_path / name}", f"export_dir={tmp_path / name / 'exports'}",
        *[o.replace("STYLES", str(styles)) for o in overrides],
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=args)


def test_train_multi_then_add_a_style_by_its_norms(tmp_path):
    from fststyle.train.run import train

    first = train(train_config(
        tmp_path, "two", "style.names=[starry_night,wave]", "style.images=[STYLES/starry_night.jpg,STYLES/wave.jpg]",
        "trainer.max_steps=3",
    ))
    assert first == tmp_path / "two" / "exports" / "multi.safetensors"
    assert read_meta(first).style_names == ["starry_night", "wave"]
    samples = sorted((tmp_path / "two" / "samples").iterdir())
    assert (Image.open(samples[0]).height - 2) // (64 + 2) == 3  # 64-px images: the content row, then a row per style
    added = train(train_config(
        tmp_path, "three", "style.names=[candy]", "style.images=[STYLES/candy.jpg]", f"init_from={first}",
        "style.name=multi3", "trainer.max_steps=2",
    ))
    assert read_meta(added).style_names == ["starry_night", "wave", "candy"]
    before, after = load_network(first)[0].state_dict(), load_network(added)[0].state_dict()
    moved = False
    for key, old in before.items():
        if old.shape == after[key].shape:  # shared convolutions: frozen
            assert torch.equal(old, after[key]), key
        else:  # norm tables: the old styles' rows frozen, the new row trained from their mean
            assert torch.equal(old, after[key][:2]), key
            moved |= not torch.allclose(after[key][2], old.mean(0))
    assert moved
    with pytest.raises(UserError, match="a multi-style network; add styles to it with style=multi"):
        train(train_config(tmp_path, "bad", "style.image=STYLES/starry_night.jpg", f"init_from={first}", style="starry_night"))


def test_one_style_init_from_trains_every_weight_on_from_a_shipped_network(tmp_path):
    from fststyle.train.run import train
    from fststyle.zoo import ZOO_DIR, recipe

    shipped = load_network(ZOO_DIR / "wave.safetensors")[0].state_dict()
    was = read_meta(ZOO_DIR / "wave.safetensors")
    tuned = train(train_config(
        tmp_path, "tune", "style.image=STYLES/wave.jpg", "init_from=wave", "trainer.max_steps=2", "optim.lr=1e-5",
        "loss.lattice_weight=1e9", style="wave",
    ))
    after = load_network(tuned)[0].state_dict()
    assert recipe(read_meta(tuned).config).endswith(f"; fine-tuned from a {was.training['steps']}-step network ({recipe(was.config)})")
    gaps = {key: float((after[key] - old).abs().max()) for key, old in shipped.items()}
    assert max(gaps.values()) < 1e-3  # two small Adam steps from the shipped weights, not a fresh network
    assert sum(gap > 0 for gap in gaps.values()) > len(gaps) * 0.9  # convolutions and norms both train
    with pytest.raises(UserError, match="init_from=wave: its network differs from model= in base_channels, end_kernel, residual_blocks"):
        train(train_config(tmp_path, "lite", "style.image=STYLES/wave.jpg", "init_from=wave", "model=lite", style="wave"))


def test_unknown_style_names_are_one_line(tmp_path):
    from fststyle.train.run import train

    with pytest.raises(UserError, match=r"no style 'nope' \(available: candy, .*\); a picture of your own needs style.images"):
        train(train_config(tmp_path, "x", "style.names=[wave,nope]"))
    with pytest.raises(UserError, match="style.images has 1 images for 2 style.names"):
        train(train_config(tmp_path, "x", "style.names=[wave,candy]", "style.images=[a.jpg]"))
