"""The lite network (conf/model/lite.yaml) and distillation from a trained teacher (teacher=FILE_OR_NAME)."""
import shutil

import pytest
import torch
from hydra import compose, initialize_config_dir

from fststyle.errors import UserError
from fststyle.nets.transformer import TransformerConfig, TransformerNet
from fststyle.stylefile import export_transformer, load_transformer
from fststyle.train.data import StyleDataModule
from fststyle.train.run import load_teacher, train
from fststyle.zoo import resolve_model
from tests.test_config import CONF


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def multiply_adds(net: TransformerNet, size: int = 64) -> int:
    """Multiply-adds of the network's convolutions on a size x size image."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        total += output.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1] // module.groups

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net(torch.rand(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return total


def test_model_lite_is_a_small_network_that_a_style_file_rebuilds(tmp_path):
    cfg = compose_train("model=lite")
    lite = TransformerNet(TransformerConfig(**cfg.model))
    full = TransformerNet(TransformerConfig(**compose_train().model))
    assert lite.config.end_kernel == 3 and full.config.end_kernel == 9
    assert multiply_adds(full) > 5 * multiply_adds(lite)
    path = export_transformer(lite, tmp_path / "lite.safetensors", {"name": "lite"})
    back, meta = load_transformer(path)
    assert meta.architecture["end_kernel"] == 3
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(back(x), lite.eval()(x))


def test_an_unknown_teacher_is_one_clear_error_before_training(tmp_path):
    cfg = compose_train("model=lite", "teacher=no_such_style", f"run_dir={tmp_path}", f"export_dir={tmp_path}/exports")
    with pytest.raises(UserError, match="neither a file nor a shipped style"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


def test_a_teacher_file_is_recorded_by_its_style_and_file_name_not_its_path(tmp_path):
    src = resolve_model("starry_night_stable")[0]
    copy = tmp_path / "runs" / "s8" / "sn_2600.safetensors"
    copy.parent.mkdir(parents=True)
    shutil.copyfile(src, copy)
    net, label = load_teacher(str(copy))
    assert label == "starry_night_stable (sn_2600.safetensors)"  # the style the file names, not where it lay
    assert isinstance(net, TransformerNet)
    assert load_teacher("starry_night_stable")[1] == "starry_night_stable"
    assert load_teacher(None) == (None, None)


def teacher_gap(student: TransformerNet, teacher: TransformerNet, photos: torch.Tensor) -> float:
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(student.eval()(photos), teacher.eval()(photos)))


def test_a_lite_network_learns_its_teacher_and_the_checkpoint_keeps_only_the_student(tmp_path, coco_dir, vgg16_caffe):
    """Distillation alone (no style or content term): 30 steps bring the lite network far closer to the shipped
    starry_night_stable (starry_night_lite's own teacher) than it started; the teacher, like the VGG, stays out of the checkpoint and comes back on resume."""
    from tests.conftest import STYLES, need

    overrides = [
        "model=lite", "teacher=starry_night_stable", f"style.image={need(STYLES / 'starry_night.jpg')}", "style.weight=0", "loss.content_weight=0", "loss.distill_weight=1",
        "loss.lattice_weight=0",
        "optim.lr=3e-3", "data=folder", f"data.path={coco_dir}", f"loss.weights={vgg16_caffe}", "logger=none",
        "trainer.max_steps=30", "data.image_size=64", "data.num_workers=0", f"run_dir={tmp_path}",
        f"export_dir={tmp_path}/exports", "checkpoint_every=10",
    ]
    cfg = compose_train(*overrides)
    path = train(cfg)
    dm = StyleDataModule(source="folder", path=str(coco_dir), image_size=64, num_workers=0)
    dm.setup("fit")
    photos = next(iter(dm.val_dataloader())).float() / 255
    teacher = load_transformer(resolve_model("starry_night_stable")[0])[0]
    torch.manual_seed(cfg.seed)
    untrained = TransformerNet(TransformerConfig(**cfg.model))
    student, meta = load_transformer(path)
    assert meta.architecture["base_channels"] == 16
    assert meta.config["teacher"] == "starry_night_stable"
    assert teacher_gap(student, teacher, photos) < 0.5 * teacher_gap(untrained, teacher, photos)

    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert not any(k.startswith(("teacher.", "loss.network.")) for k in ckpt["state_dict"])
    train(compose_train(*overrides, "resume=true", "trainer.max_steps=32"))
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 32
