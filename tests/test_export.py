import json

import pytest
import torch

from fststyle.errors import UserError
from fststyle.export import export_checkpoint
from fststyle.nets.transformer import TransformerConfig, TransformerNet
from fststyle.stylefile import export_transformer, load_transformer


def test_export_reload_gives_identical_output(tmp_path):
    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(base_channels=8, residual_blocks=2, upsample="transpose")).eval()
    path = export_transformer(net, tmp_path / "wave.safetensors", {"name": "wave", "image": "x.jpg"}, {"seed": 1})
    loaded, meta = load_transformer(path)
    assert meta.style == "wave" and meta.architecture == net.config.to_dict()
    assert meta.config == {"seed": 1} and meta.fststyle_version
    x = torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))
    assert path.read_bytes()[8:9] == b"{"  # safetensors: a JSON header, no pickle


def test_default_export_is_small(tmp_path):
    path = export_transformer(TransformerNet(), tmp_path / "s.safetensors", {"name": "s"})
    assert 6.5e6 < path.stat().st_size < 7.0e6  # 1.68 M fp32 parameters, nothing else


def test_not_an_fststyle_file(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(1)}, str(other))
    with pytest.raises(UserError, match="not an fststyle style file"):
        load_transformer(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="not an fststyle"):
        load_transformer(junk)
    with pytest.raises(UserError, match="no such file"):
        load_transformer(tmp_path / "missing.safetensors")


def test_export_from_lightning_checkpoint_and_cli(tmp_path):
    from fststyle.export import main

    net = TransformerNet(TransformerConfig(base_channels=8, residual_blocks=1))
    ckpt = {
        "state_dict": {f"transformer.{k}": v for k, v in net.state_dict().items()},
        "hyper_parameters": {"model": net.config.to_dict(), "style": {"name": "udnie"}, "config": {"a": 1}},
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    path = export_checkpoint(tmp_path / "last.ckpt", tmp_path / "exports")
    assert path.name == "udnie.safetensors"
    loaded, meta = load_transformer(path)
    assert meta.style == "udnie"
    assert main([str(tmp_path / "last.ckpt"), str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "udnie.safetensors").is_file()
    assert main([str(tmp_path / "missing.ckpt")]) == 2


def test_an_export_of_a_checkpoint_says_how_far_it_trained(tmp_path):
    net = TransformerNet(TransformerConfig(base_channels=8, residual_blocks=1))
    ckpt = {
        "state_dict": {f"transformer.{k}": v for k, v in net.state_dict().items()}, "global_step": 40,
        "hyper_parameters": {"model": net.config.to_dict(), "style": {"name": "udnie"},
                             "config": {"data": {"image_size": 256, "path": "photos/"}}},
    }
    torch.save(ckpt, tmp_path / "old.ckpt")  # written before checkpoints carried their record
    _, meta = load_transformer(export_checkpoint(tmp_path / "old.ckpt", tmp_path / "old"))
    assert meta.training == {"steps": 40, "image_size": 256, "data": "photos/"}
    record = {"steps": 40, "batch": 4, "image_size": 256, "data": "photos/", "precision": "32-true",
              "machine": "CPU", "wall_time_s": 480, "resumed_at_step": None}
    torch.save({**ckpt, "training_record": record}, tmp_path / "new.ckpt")
    _, meta = load_transformer(export_checkpoint(tmp_path / "new.ckpt", tmp_path / "new"))
    assert meta.training == record


def test_other_architecture_is_refused(tmp_path):
    path = export_transformer(TransformerNet(TransformerConfig(base_channels=8)), tmp_path / "a.safetensors", {"name": "a"})
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["architecture"] = json.dumps({"base_channels": 16, "residual_blocks": 5, "upsample": "nearest"})
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(UserError, match="do not fit"):
        load_transformer(path)
