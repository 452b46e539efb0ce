"""Each training image once per epoch across all DDP ranks and dataloader workers.

Folder data is map-style: Lightning swaps in a ``DistributedSampler`` (disjoint indices per rank) and the
``DataLoader`` hands indices to its workers, nothing to do here. A streamed Hub dataset is split per rank
with ``datasets.distributed.split_dataset_by_node``; per worker, ``datasets`` gives every worker its own
shards, but only when the rank has at least one shard per worker: with fewer shards (a local
``imagefolder`` stream has one) the spare workers would sit idle, so those streams are split by example
here instead (worker ``w`` keeps every ``num_workers``-th example, starting at ``w``).

``FSSTYLE_SAMPLE_LOG=DIR`` (debug, off by default) appends the key of every sample a process loads to
``DIR/rank<R>-worker<W>-pid<P>.txt``, to check the split on a real run.
"""
from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path
from typing import Callable, Iterator

import datasets
import pytorch_lightning as pl
from datasets.distributed import split_dataset_by_node
from pytorch_lightning.callbacks import Callback
from torch.utils.data import Dataset, get_worker_info

SAMPLE_LOG_ENV = "FSSTYLE_SAMPLE_LOG"


def sample_log_dir() -> Path | None:
    folder = os.environ.get(SAMPLE_LOG_ENV)
    return Path(folder) if folder else None


def record_key(record: dict) -> str:
    """A sample's identity: its file path, else a hash of its bytes (Hub parquet rows have no path)."""
    if record.get("path"):
        return str(record["path"])
    return hashlib.sha1(record["bytes"]).hexdigest()


def log_sample(folder: Path, rank: int, key: str) -> None:
    worker = get_worker_info()
    name = f"rank{rank}-worker{worker.id if worker else 0}-pid{os.getpid()}.txt"
    with open(folder / name, "a") as f:
        f.write(key + "\n")


class RankStream:
    """This rank's part of a streamed dataset, further split over the dataloader workers; iterable of examples."""

    def __init__(self, stream: datasets.IterableDataset, rank: int, world_size: int, key_column: str):
        self.stream = split_dataset_by_node(stream, rank=rank, world_size=world_size) if world_size > 1 else stream
        self.rank, self.world_size, self.key_column = rank, world_size, key_column
        self.log_dir = sample_log_dir()

    def set_epoch(self, epoch: int) -> None:
        """New shard order and shuffle buffer seed each epoch (the same on every rank, so the split holds)."""
        self.stream.set_epoch(epoch)

    def examples(self) -> Iterator[dict]:
        worker = get_worker_info()
        if worker is None or worker.num_workers <= self.stream.num_shards:
            return iter(self.stream)  # datasets splits the shards over the workers itself
        # Fewer shards than workers: every worker reads the rank's stream (same seed, same order) and keeps
        # its slice. ``.iter`` skips datasets' own per-worker shard split, which would starve workers.
        rows = (dict(zip(batch, values)) for batch in self.stream.iter(batch_size=1) for values in zip(*batch.values()))
        return itertools.islice(rows, worker.id, None, worker.num_workers)

    def __iter__(self) -> Iterator[dict]:
        if self.log_dir is None:
            yield from self.examples()
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for example in self.examples():
            log_sample(self.log_dir, self.rank, record_key(example[self.key_column]))
            yield example


class LoggedSamples(Dataset):
    """A map-style dataset that logs the key of each item it loads (only built when the sample log is on)."""

    def __init__(self, dataset: Dataset, key: Callable[[int], str], rank: int, folder: Path):
        self.dataset, self.key, self.rank, self.folder = dataset, key, rank, folder
        folder.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        log_sample(self.folder, self.rank, self.key(index))
        return self.dataset[index]


class StreamEpoch(Callback):
    """Tell a streamed train set the epoch (Lightning only does that for samplers, which streams don't have)."""

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        stream = getattr(trainer.datamodule, "train_stream", None)
        if stream is not None:
            stream.set_epoch(trainer.current_epoch)
