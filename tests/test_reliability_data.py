"""Issue 7.1: bad training images are converted or skipped, counted across workers, and reported."""
from __future__ import annotations

import random

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from fststyle.train.data import (
    SKIP_REASONS,
    DecodedImages,
    NoReadableImages,
    SkipCounter,
    StreamedImages,
    StyleDataModule,
    UnreadableImage,
    decode,
)
from tests.badimages import BAD, EXPECTED, make_bad_folder

SIZE = 32


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    return make_bad_folder(tmp_path_factory.mktemp("bad") / "photos")


def path_records(folder, names):
    return datasets.Dataset.from_dict({"image": [str(folder / n) for n in names]}).cast_column(
        "image", datasets.Image(decode=False)
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_kind_of_file_is_converted_or_refused_with_its_reason(bad_folder, name):
    record = {"path": str(bad_folder / name), "bytes": None}
    if EXPECTED[name] is None:
        array = decode(record, SIZE, random.Random(0))
        assert array.shape == (SIZE, SIZE, 3) and array.dtype == np.uint8
    else:
        with pytest.raises(UnreadableImage) as e:
            decode(record, SIZE, random.Random(0))
        assert e.value.reason == EXPECTED[name]
    # the same bytes arriving from a streamed (Hub) dataset behave the same
    data = (bad_folder / name).read_bytes()
    if data:
        streamed = {"path": name, "bytes": data}
        if EXPECTED[name] is None:
            assert decode(streamed, SIZE, None).shape == (SIZE, SIZE, 3)
        else:
            with pytest.raises(UnreadableImage, match=EXPECTED[name].split(" ")[0]):
                decode(streamed, SIZE, None)


def test_conversions_keep_the_picture(bad_folder):
    def centre(name):
        return decode({"path": str(bad_folder / name), "bytes": None}, SIZE, None).astype(int)

    assert abs(centre("gray16.png").mean() - 128) <= 1  # 16-bit scaled, not clipped to white
    assert abs(centre("rgb16.png").mean() - 128) <= 1
    assert centre("rgba.png").min() == 255  # fully transparent -> white background
    gray = centre("grayscale.jpg")
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_between_one_and_two_times_the_pixel_limit_is_skipped_too(bad_folder, monkeypatch):
    """Pillow only warns below 2x MAX_IMAGE_PIXELS; a warning must not let a huge image through."""
    with Image.open(bad_folder / "good_0.jpg") as im:
        pixels = im.width * im.height
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pixels - 1)
    with pytest.raises(UnreadableImage) as e:
        decode({"path": str(bad_folder / "good_0.jpg"), "bytes": None}, SIZE, None)
    assert e.value.reason == "too large (decompression bomb)"


def test_map_style_dataset_keeps_full_batches_and_counts_in_workers(bad_folder):
    names = sorted(EXPECTED)
    counter = SkipCounter(num_workers=2)
    images = DecodedImages(path_records(bad_folder, names), "image", SIZE, train=True, counter=counter)
    loader = DataLoader(images, batch_size=4, shuffle=True, num_workers=2, drop_last=False)
    batches = list(loader)
    assert [len(b) for b in batches] == [4] * (len(names) // 4) + ([len(names) % 4] if len(names) % 4 else [])
    assert all(b.shape[1:] == (3, SIZE, SIZE) and b.dtype == torch.uint8 for b in batches)
    totals = counter.totals()  # read in the main process, written by the two worker processes
    assert totals["decoded"] == len(names)  # one decoded image per item asked for
    for reason in set(BAD.values()):  # every bad file was met at least once as its own index
        assert totals[reason] >= sum(r == reason for r in BAD.values())
    assert totals["skipped"] == sum(totals.get(r, 0) for r in SKIP_REASONS)


def test_streamed_dataset_skips_and_counts_exactly(bad_folder):
    names = sorted(EXPECTED)
    hf = datasets.Dataset.from_dict(
        {"image": [{"path": n, "bytes": (bad_folder / n).read_bytes()} for n in names]}
    ).cast_column("image", datasets.Image(decode=False))
    counter = SkipCounter(num_workers=2)
    stream = StreamedImages(hf.to_iterable_dataset(num_shards=2), "image", SIZE, train=True, counter=counter)
    seen = sum(len(b) for b in DataLoader(stream, batch_size=3, num_workers=2))
    good = len(EXPECTED) - len(BAD)
    assert seen == good
    totals = counter.totals()
    assert totals["decoded"] == good and totals["skipped"] == len(BAD)
    for reason in set(BAD.values()):
        assert totals[reason] == sum(r == reason for r in BAD.values())


def test_folder_where_nothing_is_readable_fails_fast_with_one_line(tmp_path):
    folder = make_bad_folder(tmp_path / "junk", only_bad=True)
    dm = StyleDataModule(source="folder", path=str(folder), image_size=SIZE, num_workers=0)
    with pytest.raises(NoReadableImages) as e:
        dm.setup("fit")
    assert f"none of {len(BAD)} images tried" in str(e.value) and "\n" not in str(e.value)  # each file once


def test_unreadable_validation_images_are_replaced_from_training_images(bad_folder):
    dm = StyleDataModule(source="folder", path=str(bad_folder), image_size=SIZE, num_workers=0, val_images=4)
    dm.setup("fit")  # the first 4 files sorted are bomb, cmyk, good_0, good_1: the bomb is dropped
    names = [p.split("/")[-1] for p in (r["path"] for r in dm.val_set.hf["image"])]
    assert "bomb.png" not in names and len(names) == 3
    assert next(iter(dm.val_dataloader())).shape == (3, 3, SIZE, SIZE)


def test_worker_that_meets_only_bad_images_reports_one_line(tmp_path):
    folder = make_bad_folder(tmp_path / "junk", only_bad=True)
    images = DecodedImages(path_records(folder, sorted(BAD)), "image", SIZE, train=True)
    with pytest.raises(NoReadableImages) as e:
        next(iter(DataLoader(images, batch_size=2, num_workers=1)))
    message = str(e.value)
    assert "in a row could not be read" in message and "\n" not in message and "Traceback" not in message
