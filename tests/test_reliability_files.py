"""Issue 7.5: hostile checkpoints never run code; exports hold no pickle; metadata is never instantiated."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from fststyle import export
from fststyle.errors import UserError
from fststyle.nets.transformer import TransformerConfig, TransformerNet
from fststyle.nets.vgg import LossNetwork
from fststyle.stylefile import check_resumable, export_transformer, load_transformer
from fststyle.train import run as training
from tests.badimages import photo

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = {"base_channels": 8, "residual_blocks": 1, "upsample": "nearest"}


class RunsCode:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def hostile_file(path: Path, marker: Path) -> Path:
    """A checkpoint-shaped pickle whose loading creates ``marker``."""
    torch.save({"state_dict": {"transformer.x": RunsCode(marker)}, "hyper_parameters": {"model": TINY_MODEL}}, path)
    return path


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "pwned"


@pytest.fixture
def evil(tmp_path, marker) -> Path:
    return hostile_file(tmp_path / "evil.ckpt", marker)


def test_the_payload_is_real(evil, marker):
    torch.load(evil, weights_only=False)  # what an unsafe loader would do
    assert marker.exists()


def test_loss_weights_refuse_a_pickle_payload(tmp_path, marker):
    weights = hostile_file(tmp_path / "vgg.pth", marker)
    with pytest.raises(UserError, match="loss.weights"):
        LossNetwork("vgg16", weights=str(weights), layers=["relu1_2"])
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_infer_refuses_a_pickle_payload(tmp_path, marker, suffix):
    path = hostile_file(tmp_path / f"style{suffix}", marker)
    with pytest.raises(UserError):
        load_transformer(path)
    assert not marker.exists()


def test_export_cli_refuses_a_pickle_payload(evil, marker, tmp_path, capsys):
    assert export.main([str(evil), str(tmp_path / "out")]) == 2
    assert "error:" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()


def training_config(tmp_path: Path, *extra: str):
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    for i in range(3):
        photo(80, 64, i).save(photos / f"{i}.jpg")
    photo(64, 64, 9).save(tmp_path / "style.jpg")
    args = [
        "data=folder", f"data.path={photos}", f"style.image={tmp_path / 'style.jpg'}", "loss.weights=random",
        "model.base_channels=8", "model.residual_blocks=1", "data.image_size=64", "data.num_workers=0",
        "logger=none", f"run_dir={tmp_path / 'run'}", f"export_dir={tmp_path / 'exports'}", "trainer.max_steps=2",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=args)


@pytest.mark.parametrize("how", ["ckpt_path", "resume"])
@pytest.mark.parametrize("with_early_check", [True, False])
def test_training_resume_refuses_a_pickle_payload(tmp_path, evil, marker, monkeypatch, how, with_early_check):
    if not with_early_check:  # Lightning's own checkpoint loading (trainer.fit(ckpt_path=)) must be safe too
        monkeypatch.setattr(training, "check_resumable", lambda *a: None)
    if how == "ckpt_path":
        cfg = training_config(tmp_path, f"ckpt_path={evil}")
    else:
        (tmp_path / "run" / "checkpoints").mkdir(parents=True)
        evil.rename(tmp_path / "run" / "checkpoints" / "last.ckpt")
        cfg = training_config(tmp_path, "resume=true")
    with pytest.raises(UserError, match="refused|not a readable"):
        training.train(cfg)
    assert not marker.exists()
    assert not (tmp_path / "exports").exists()


def test_exported_style_file_is_pure_safetensors(tmp_path):
    """8-byte header length, JSON header of tensors + string metadata, raw tensor bytes: nothing to unpickle."""
    net = TransformerNet(TransformerConfig(**TINY_MODEL))
    path = export_transformer(net, tmp_path / "s.safetensors", {"name": "s"}, {"model": TINY_MODEL})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    metadata = header.pop("__metadata__")
    assert all(isinstance(v, str) for v in metadata.values())
    ends = sorted(t["data_offsets"][1] for t in header.values())
    assert set(header) == {f for f in net.state_dict()} and ends[-1] == len(raw) - 8 - n
    assert b"\x80\x02" not in raw[:2] and not raw.startswith(b"PK")  # neither a pickle nor a torch zip


def test_checkpoint_metadata_is_never_instantiated(tmp_path):
    """``_target_`` entries in a checkpoint's config are data: loading, exporting and resuming never build them."""
    made = tmp_path / "made_by_target"
    target = {"_target_": "os.makedirs", "name": str(made)}
    net = TransformerNet(TransformerConfig(**TINY_MODEL))
    state = {f"transformer.{k}": v for k, v in net.state_dict().items()}
    config = {"logger": target, "data": target, "trainer": target, "model": TINY_MODEL}
    ckpt = tmp_path / "meta.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"model": TINY_MODEL, "style": {"name": "m"}, "config": config}}, ckpt)

    loaded, meta = load_transformer(ckpt)
    exported = export.export_checkpoint(ckpt, tmp_path / "exports")
    load_transformer(exported)
    check_resumable(ckpt, TINY_MODEL)
    assert json.loads(json.dumps(meta.architecture)) == TINY_MODEL
    # a model section that is itself a _target_ is refused, not built
    torch.save({"state_dict": state, "hyper_parameters": {"model": {**TINY_MODEL, **target}}}, ckpt)
    with pytest.raises(UserError):
        load_transformer(ckpt)
    with pytest.raises(UserError, match="another architecture"):
        check_resumable(ckpt, TINY_MODEL)
    assert not made.exists()


def tiny_onnx(path, input_name="x", channels=3):
    import onnx
    from onnx import TensorProto, helper

    value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", channels, "h", "w"])  # noqa: E731
    graph = helper.make_graph([helper.make_node("Identity", [input_name], ["stylized"])], "g", [value(input_name)], [value("stylized")])
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.parametrize("name, channels, why", [("x", 3, "its input is"), ("image", 1, "its input is")])
def test_an_onnx_of_another_network_is_one_clear_line(tmp_path, name, channels, why):
    from fststyle.infer.deploy import cached_onnx

    path = tiny_onnx(tmp_path / "other.onnx", name, channels)
    with pytest.raises(UserError, match=f"not an fststyle network: {why}") as e:
        cached_onnx(path)
    assert "\n" not in str(e.value)
    assert cached_onnx(tiny_onnx(tmp_path / "ours.onnx", "image", 3)) == tmp_path / "ours.onnx"


def test_a_broken_cache_entry_is_rebuilt_with_one_line(tmp_path, monkeypatch, capsys):
    from fststyle.infer import deploy

    monkeypatch.setenv("FSSTYLE_CACHE", str(tmp_path / "cache"))
    net = TransformerNet(TransformerConfig(base_channels=8, residual_blocks=1))
    style = export_transformer(net, tmp_path / "tiny.safetensors", {"name": "tiny"})
    entry = deploy.cached_onnx(style)
    good = entry.read_bytes()
    entry.write_bytes(good[:84])  # what a crashed writer of old left behind
    assert deploy.cached_onnx(style) == entry
    assert "is broken" in capsys.readouterr().err and deploy.graph_problem(entry) is None
