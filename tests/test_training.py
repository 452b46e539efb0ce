"""A real short training run: real COCO images, real Caffe VGG16, real starry_night."""
import pytest
import torch
from hydra import compose, initialize_config_dir

from fststyle.errors import UserError
from fststyle.nets.losses import build_loss
from fststyle.nets.transformer import TransformerConfig, TransformerNet
from fststyle.style import load_style
from fststyle.stylefile import load_transformer, read_meta
from fststyle.train.data import StyleDataModule
from fststyle.train.run import train
from tests.conftest import PIPE_TEST_BALANCE
from tests.test_config import CONF


@pytest.fixture(scope="module")
def trained(tmp_path_factory, coco_dir_path, vgg_path, style_path):
    out = tmp_path_factory.mktemp("run")
    overrides = [
        f"style.image={style_path}", *PIPE_TEST_BALANCE, "data=folder", f"data.path={coco_dir_path}", f"loss.weights={vgg_path}",
        "logger=csv", "trainer.max_steps=30", "data.image_size=128", "data.num_workers=0",
        "trainer.val_check_interval=15", "trainer.log_every_n_steps=1", f"run_dir={out}", f"export_dir={out}/exports",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return cfg, train(cfg), out


@pytest.fixture(scope="module")
def coco_dir_path():
    from tests.conftest import COCO, need

    return need(COCO)


@pytest.fixture(scope="module")
def vgg_path():
    from tests.conftest import VGG16_CAFFE, need

    return need(VGG16_CAFFE)


@pytest.fixture(scope="module")
def style_path():
    from tests.conftest import STYLES, need

    return need(STYLES / "starry_night.jpg")


def test_training_run_exports_one_small_style_file(trained):
    cfg, path, out = trained
    assert path == out / "exports" / "starry_night.safetensors"
    assert [p.name for p in (out / "exports").iterdir()] == ["starry_night.safetensors"]
    assert path.stat().st_size < 7e6
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_0000015.jpg", "step_0000030.jpg"]
    metrics = (out / "logs" / "version_0" / "metrics.csv").read_text()
    assert "train/style" in metrics and "val/total" in metrics


def test_style_loss_falls_and_output_is_stylized(trained):
    """On held-out photos the style loss falls to under half of the untrained network's, in 30 steps."""
    cfg, path, _ = trained
    loss = build_loss(dict(cfg.loss), dict(cfg.style))
    loss.set_style(load_style(cfg.style.image, size=cfg.style.size))
    dm = StyleDataModule(source="folder", path=cfg.data.path, image_size=128, num_workers=0)
    dm.setup("fit")
    photos = next(iter(dm.val_dataloader())).float() / 255
    torch.manual_seed(cfg.seed)
    untrained = TransformerNet(TransformerConfig(**cfg.model)).eval()
    trained_net, meta = load_transformer(path)
    with torch.no_grad():
        before, out = loss(untrained(photos), photos), trained_net(photos)
        after = loss(out, photos)
    assert after["style"] < 0.5 * before["style"]
    assert after["style"] < loss(photos, photos)["style"]  # more Starry Night than the photos themselves
    assert (out - photos).abs().mean() > 0.05  # visibly changed
    assert meta.style == "starry_night"


def test_resume_continues_from_last_checkpoint(trained):
    cfg, _, out = trained
    from omegaconf import OmegaConf

    with pytest.raises(UserError, match="resume=true"):
        train(cfg)  # never silently starts over an existing run
    cfg = OmegaConf.merge(cfg, {"resume": True, "trainer": {"max_steps": 32}})
    train(cfg)
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 32
    assert not any(k.startswith("loss.network.") for k in ckpt["state_dict"])  # VGG is not saved
    # the checkpoint says how it was made, so an export of it (a run stopped early) says so too
    record = ckpt["training_record"]
    assert record["steps"] == 32 and record["resumed_at_step"] == 30 and record["precision"] and record["machine"]
    assert read_meta(out / "checkpoints" / "last.ckpt").training == record
