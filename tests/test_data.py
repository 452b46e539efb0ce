import pytest
import torch

from fststyle.errors import UserError
from fststyle.train.data import StyleDataModule, list_images, square_crop


def test_folder_datamodule_on_real_coco(coco_dir):
    dm = StyleDataModule(source="folder", path=str(coco_dir), image_size=64, batch_size=3, num_workers=0, val_images=4)
    dm.setup("fit")
    assert len(dm.train_set) == 256 - 4 and len(dm.val_set) == 4
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (3, 3, 64, 64) and batch.dtype == torch.uint8
    val = next(iter(dm.val_dataloader()))
    assert val.shape == (4, 3, 64, 64)
    assert torch.equal(val, next(iter(dm.val_dataloader())))  # fixed samples for the grids
    assert batch.float().std() > 10  # real photos, not blank


def test_folder_is_recursive_and_filters_extensions(tmp_path, coco_dir):
    src = sorted(coco_dir.glob("*.jpg"))[:3]
    (tmp_path / "a" / "b").mkdir(parents=True)
    for i, p in enumerate(src):
        (tmp_path / ("a/b" if i else "") / f"x{i}.JPG").write_bytes(p.read_bytes())
    (tmp_path / "notes.txt").write_text("no image")
    assert len(list_images(tmp_path)) == 3


def test_square_crop_sizes():
    from PIL import Image

    img = Image.new("L", (50, 20), 128)  # grayscale and smaller than the crop
    assert square_crop(img, 64, None).shape == (64, 64, 3)


def test_bad_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        StyleDataModule(source="folder", path=str(tmp_path / "nope")).setup("fit")
    with pytest.raises(UserError, match="no images"):
        StyleDataModule(source="folder", path=str(tmp_path)).setup("fit")
    with pytest.raises(UserError, match="data.path=DIR"):
        StyleDataModule(source="folder", path=None)


def test_hub_without_network_says_how_to_train_offline():
    dm = StyleDataModule(source="hub", name="detection-datasets/coco")  # HF_HUB_OFFLINE=1 in tests
    with pytest.raises(UserError, match="data=folder data.path=DIR"):
        dm.setup("fit")
