"""Training images through Hugging Face ``datasets``: a local folder, or COCO streamed from the Hub.

Both sources yield the same thing, an ``{"path", "bytes"}`` record decoded here with Pillow,
so every source shares one decoding path (and one way of dealing with bad files).
Batches are uint8 (N, 3, S, S); the LightningModule turns them into floats on the device.
"""
from __future__ import annotations

import io
import logging
import random
import signal
import warnings
from pathlib import Path

import datasets
import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, get_worker_info

from fststyle.errors import UserError
from fststyle.images import IMAGE_EXTENSIONS, upright_srgb
from fststyle.train.sharding import LoggedSamples, RankStream, record_key, sample_log_dir

log = logging.getLogger(__name__)



def list_images(root: str | Path) -> list[Path]:
    """Every image file under ``root``, recursively, in a stable order."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"data.path: {str(root)!r} is not a folder")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def open_image(record: dict | Image.Image) -> Image.Image:
    if isinstance(record, Image.Image):
        return record
    if record.get("bytes"):
        return Image.open(io.BytesIO(record["bytes"]))
    return Image.open(record["path"])


# -- decoding that survives real-world files ----------------------------------------------------
SKIP_REASONS = ("empty file", "not an image", "truncated or corrupt", "too large (decompression bomb)", "missing")
MAX_SKIPS_IN_A_ROW = 100   # a loader that meets this many unreadable images in a row gives up
WARN_FIRST_SKIPS = 5       # per process, name the first few skipped files; the rest are counted


class UnreadableImage(Exception):
    """A training image that cannot be decoded; ``reason`` is one of ``SKIP_REASONS``."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class NoReadableImages(UserError):
    """Too few readable images to train on."""

    def __init__(self, message: str):
        # Raised inside a DataLoader worker, torch re-raises it in the main process with the worker's
        # whole traceback as the message; keep only our own line so the CLI still prints one line.
        marker = f"{type(self).__name__}: "
        if message.startswith("Caught ") and marker in message:
            message = message.rsplit(marker, 1)[1].strip()
        super().__init__(message)


IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\0", b"MM\0*")


def has_image_signature(record: dict) -> bool:
    """Whether the record's first bytes are an image format's magic number (WebP: RIFF....WEBP)."""
    if record.get("bytes"):
        head = bytes(record["bytes"][:12])
    else:
        with open(record["path"], "rb") as f:
            head = f.read(12)
    return head.startswith(IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def record_name(record: dict | Image.Image) -> str:
    return str(record.get("path") or "<bytes>") if isinstance(record, dict) else "<image>"


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB: alpha composited on white, 16-bit scaled (not clipped) to 8 bits."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit greyscale; convert("RGB") would clip to white
        array = np.asarray(image).astype(np.float32) / 257.0
        image = Image.fromarray(np.clip(array + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def decode(record: dict | Image.Image, size: int, rng: random.Random | None) -> np.ndarray:
    """A ``size``x``size`` RGB uint8 crop of one record, or ``UnreadableImage`` saying why not."""
    if isinstance(record, dict) and record.get("bytes") is None and record.get("path"):
        path = Path(record["path"])
        if not path.is_file():
            raise UnreadableImage("missing", str(path))
        if path.stat().st_size == 0:
            raise UnreadableImage("empty file", str(path))
    elif isinstance(record, dict) and not record.get("bytes"):
        raise UnreadableImage("empty file", record_name(record))
    try:
        with warnings.catch_warnings():
            # Between 1x and 2x Pillow's limit is only a warning: treat it like the error above 2x.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_image(record) as im:
                return square_crop(im, size, rng)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UnreadableImage("too large (decompression bomb)", str(e).split(",")[0]) from None
    except UnidentifiedImageError as e:
        if has_image_signature(record):  # e.g. a PNG whose header chunk fails its CRC: an image, damaged
            raise UnreadableImage("truncated or corrupt", f"{e}; it starts like an image file") from None
        raise UnreadableImage("not an image", str(e)) from None
    except Exception as e:  # noqa: BLE001 - truncated/corrupt data fails in many ways inside Pillow
        raise UnreadableImage("truncated or corrupt", f"{e.__class__.__name__}: {e}") from None


def square_crop(image: Image.Image, size: int, rng: random.Random | None) -> np.ndarray:
    """A square of the shorter side (random with ``rng``, else centred) resized to ``size``x``size``.

    Cropping before resizing keeps very thin or very small images cheap: they are scaled up, not skipped.
    """
    if image.format == "JPEG":
        image.draft("RGB", (size, size))  # let libjpeg decode at 1/2, 1/4, 1/8 scale: much faster
    image = to_rgb(upright_srgb(image))
    side = min(image.size)
    x = rng.randint(0, image.width - side) if rng else (image.width - side) // 2
    y = rng.randint(0, image.height - side) if rng else (image.height - side) // 2
    square = image.resize((size, size), Image.Resampling.BILINEAR, box=(x, y, x + side, y + side), reducing_gap=2.0)
    return np.asarray(square)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.copy()).permute(2, 0, 1)  # uint8 CHW


class SkipCounter:
    """Images decoded and skipped (by reason), summed over the main process and all DataLoader workers.

    Workers are separate processes, so the counts live in a shared-memory tensor: row 0 is the
    main process, row ``1 + worker id`` a worker; each row has one writer, so no lock is needed.
    """

    def __init__(self, num_workers: int = 0):
        self.counts = torch.zeros(num_workers + 1, 1 + len(SKIP_REASONS), dtype=torch.int64).share_memory_()
        self.warned = 0

    def _row(self) -> int:
        info = get_worker_info()
        return 0 if info is None else (info.id + 1) % len(self.counts)

    def decoded(self) -> None:
        self.counts[self._row(), 0] += 1

    def skipped(self, name: str, error: UnreadableImage) -> None:
        self.counts[self._row(), 1 + SKIP_REASONS.index(error.reason)] += 1
        self.warned += 1
        level = logging.WARNING if self.warned <= WARN_FIRST_SKIPS else logging.DEBUG
        log.log(level, "skipping unreadable training image %s (%s)", name, error)

    def totals(self) -> dict[str, int]:
        """``decoded``, ``skipped`` and one count per skip reason that occurred."""
        sums = self.counts.sum(0).tolist()
        out = {"decoded": sums[0], "skipped": sum(sums[1:])}
        out.update({reason: n for reason, n in zip(SKIP_REASONS, sums[1:]) if n})
        return out


def too_many_skips(name: str, error: UnreadableImage) -> NoReadableImages:
    return NoReadableImages(
        f"data: {MAX_SKIPS_IN_A_ROW} training images in a row could not be read (last: {name}: {error}); "
        "check data.path / data.name"
    )


class DecodedImages(Dataset):
    """Map-style view of a Hugging Face dataset's image column as uint8 tensors.

    An unreadable image is counted and replaced by another one (random when training, the next
    one otherwise), so every batch keeps its full size.
    """

    def __init__(self, hf: datasets.Dataset, column: str, size: int, train: bool, counter: SkipCounter | None = None):
        self.hf, self.column, self.size, self.train = hf, column, size, train
        self.counter = counter if counter is not None else SkipCounter()

    def __len__(self) -> int:
        return len(self.hf)

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = random.Random() if self.train else None
        for _ in range(MAX_SKIPS_IN_A_ROW):
            record = self.hf[index][self.column]
            try:
                array = decode(record, self.size, rng)
            except UnreadableImage as e:
                self.counter.skipped(record_name(record), e)
                last = e
                index = rng.randrange(len(self)) if rng else (index + 1) % len(self)
                continue
            self.counter.decoded()
            return to_tensor(array)
        raise too_many_skips(record_name(record), last)

    def readable(self, indices) -> list[int]:
        """Those of ``indices`` that decode (checked in this process, not counted)."""
        good = []
        for i in indices:
            record = self.hf[i][self.column]
            try:
                decode(record, self.size, None)
                good.append(i)
            except UnreadableImage as e:
                log.warning("skipping unreadable image %s (%s)", record_name(record), e)
        return good


class StreamedImages(IterableDataset):
    """Iterable view of a streaming Hugging Face dataset (it shards itself across workers).

    Unreadable examples are counted and skipped.
    """

    def __init__(
        self, hf: datasets.IterableDataset, column: str, size: int, train: bool, counter: SkipCounter | None = None
    ):
        self.hf, self.column, self.size, self.train = hf, column, size, train
        self.counter = counter if counter is not None else SkipCounter()

    def __iter__(self):
        rng = random.Random() if self.train else None
        in_a_row = 0
        for example in self.hf:
            record = example[self.column]
            try:
                array = decode(record, self.size, rng)
            except UnreadableImage as e:
                self.counter.skipped(record_name(record), e)
                in_a_row += 1
                if in_a_row >= MAX_SKIPS_IN_A_ROW:
                    raise too_many_skips(record_name(record), e) from None
                continue
            in_a_row = 0
            self.counter.decoded()
            yield to_tensor(array)


PROBE_IMAGES = 64  # training images tried before giving up on a dataset where nothing decodes


def readable_val_set(val: DecodedImages, train: Dataset | IterableDataset) -> DecodedImages:
    """``val`` without its unreadable images, refilled from the training images if none is left.

    This is also the fail-fast check: when neither the validation images nor a sample of the
    training images decode, training stops here with one clear message.
    """
    good = val.readable(range(len(val)))
    if len(good) == len(val):
        return val
    if good:
        return DecodedImages(val.hf.select(good), val.column, val.size, train=False)
    if isinstance(train, DecodedImages):
        sample = random.Random(0).sample(range(len(train)), min(len(train), PROBE_IMAGES))
        good = train.readable(sample)[: len(val)]
        if good:
            return DecodedImages(train.hf.select(good), train.column, val.size, train=False)
        tried = {record_name(r[train.column]) for r in train.hf.select(sample)}
        tried |= {record_name(r[val.column]) for r in val.hf}
        raise NoReadableImages(
            f"data: none of {len(tried)} images tried could be read as an image "
            "(empty, truncated, not an image or too large); check data.path"
        )
    raise NoReadableImages(
        f"data: none of the {len(val)} validation images could be read as an image; check data.name / data.val_split"
    )


class StyleDataModule(pl.LightningDataModule):
    """``source="folder"``: every image under ``path``; ``source="hub"``: a Hub dataset, streamed."""

    def __init__(
        self,
        source: str = "hub",
        path: str | None = None,
        name: str = "detection-datasets/coco",
        split: str = "train",
        val_split: str = "val",
        image_column: str = "image",
        image_size: int = 256,
        batch_size: int = 4,
        num_workers: int = 2,
        shuffle_buffer: int = 1000,
        val_images: int = 4,
        seed: int = 0,
    ):
        super().__init__()
        if source not in ("folder", "hub"):
            raise UserError(f"data.source must be 'folder' or 'hub', got {source!r}")
        if source == "folder" and not path:
            raise UserError("data=folder needs data.path=DIR (a folder of photos, e.g. COCO train2014)")
        self.source, self.path, self.name = source, path, name
        self.split, self.val_split, self.image_column = split, val_split, image_column
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self.shuffle_buffer, self.val_images, self.seed = shuffle_buffer, val_images, seed
        self.train_set: Dataset | IterableDataset | None = None
        self.train_stream: RankStream | None = None  # source=hub: this rank's part of the stream
        self.val_set: Dataset | None = None
        self.skipped = SkipCounter(num_workers)  # read by fststyle.train.safety.ReportSkippedImages

    # -- building the datasets ------------------------------------------------------------
    def folder_datasets(self) -> tuple[datasets.Dataset, datasets.Dataset]:
        paths = [str(p) for p in list_images(self.path)]
        if not paths:
            raise UserError(f"data.path: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {self.path!r}")
        records = datasets.Dataset.from_dict({"image": paths}).cast_column("image", datasets.Image(decode=False))
        # A few fixed images for sample grids; held out when there are enough to spare.
        n_val = min(self.val_images, len(paths))
        val = records.select(range(n_val))
        train = records.select(range(n_val, len(paths))) if len(paths) > 2 * n_val else records
        return train, val

    def hub_datasets(self) -> tuple[datasets.IterableDataset, datasets.Dataset]:
        try:
            train = datasets.load_dataset(self.name, split=self.split, streaming=True)
            val_stream = datasets.load_dataset(self.name, split=self.val_split, streaming=True)
            val_stream = val_stream.cast_column(self.image_column, datasets.Image(decode=False))
            val = datasets.Dataset.from_list(list(val_stream.take(self.val_images)))
        except Exception as e:  # noqa: BLE001 - offline shows up as many exception types
            raise UserError(
                f"cannot stream {self.name!r} from the Hugging Face Hub ({e.__class__.__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}). "
                "To train offline use a local folder of photos: data=folder data.path=DIR"
            ) from None
        train = train.cast_column(self.image_column, datasets.Image(decode=False))
        train = train.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
        return train, val

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        # Under DDP each rank builds its own datasets; folder data is split by Lightning's DistributedSampler,
        # a stream here (fststyle/train/sharding.py).
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        if self.source == "folder":
            train, val = self.folder_datasets()
            self.train_set = DecodedImages(train, "image", self.image_size, train=True, counter=self.skipped)
            if (log_dir := sample_log_dir()) is not None:
                self.train_set = LoggedSamples(self.train_set, lambda i: record_key(train[i]["image"]), rank, log_dir)
            column = "image"
        else:
            train, val = self.hub_datasets()
            self.train_stream = RankStream(train, rank, world_size, key_column=self.image_column)
            self.train_set = StreamedImages(self.train_stream, self.image_column, self.image_size, train=True, counter=self.skipped)
            column = self.image_column
        self.val_set = readable_val_set(DecodedImages(val, column, self.image_size, train=False), self.train_set)

    # -- loaders ----------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=not isinstance(self.train_set, IterableDataset),
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=leave_sigterm_to_the_trainer,
        )

    def val_dataloader(self) -> DataLoader:
        # Every DDP rank validates all the sample images (Lightning keeps a DistributedSampler it is given):
        # rank 0's sample grid shows them all, and the rank-synced val loss is still their mean.
        sampler = DistributedSampler(self.val_set, num_replicas=1, rank=0, shuffle=False)
        return DataLoader(self.val_set, batch_size=len(self.val_set), sampler=sampler, num_workers=0)


def leave_sigterm_to_the_trainer(worker_id: int) -> None:
    """A SIGTERM sent to the whole job (``scancel``, a container stop, ``pkill -f train.py``) reaches the loader's
    workers too, and a worker killed first takes the trainer down before it can save its checkpoint. A worker
    lets the first one pass: the trainer saves at the step and shuts its workers down. A second SIGTERM (the
    shutdown's own ``terminate()``) ends the worker as usual."""
    def first_passes(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, first_passes)
