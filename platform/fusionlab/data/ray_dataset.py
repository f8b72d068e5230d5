"""Ray Data datasets over the manifest's shards, decoded and transformed like ShardDataset.

``ray_split_dataset``: a split as it is stored, unaugmented. ``RayEpochs``: one training worker's rows
of each epoch, in the order and with the augmentation draws the in-process path uses (``epoch_order``; a generator
keyed on ``(seed, epoch, index)``), so a run is reproducible from its parameters on either path. ``EpochBatches``:
those rows batched by a background thread that makes the next epoch's first batches before they are asked for.
Ray training workers no longer use ``RayEpochs``: they decode the node's shared copy of a split themselves
(``train.context.RayWorkerContext``, ``node_cache``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .manifest import DatasetError, Manifest
from .order import epoch_order
from .reader import DatasetReader, decode_row
from .transforms import Augment, prepare, select_modalities
from .writer import ROW_GROUP_ROWS

INDEX = "_index"  # a row's index in the split
PATH = "path"  # the shard a row came from (``read_parquet(include_paths=True)``), named in decode errors


def read_shards(paths: list[str], manifest: Manifest):
    """``read_parquet`` in the shards' order, each row with its shard's path unless a column already holds that name.

    The dataset (and those derived from it) raises its map functions' own errors: Ray Data would wrap a decode's
    DatasetError in a ``UserCodeException`` that keeps only its text, which no caller could tell from a crash."""
    import ray.data

    rows = ray.data.read_parquet(paths, shuffle=None, include_paths=PATH not in manifest.modalities)
    rows.context.raise_original_map_exception = True
    return rows


class _PrepareRow:
    """Row function for ``Dataset.map``: decode, transform (augmented from ``[seed, epoch, index]``), return numpy
    arrays."""

    def __init__(self, manifest: Manifest, modalities: list[str], with_ids: bool,
                 augment: Augment | None = None, seed: int = 0, epoch: int = 0):
        self.manifest, self.modalities, self.with_ids = manifest, modalities, with_ids
        self.augment, self.seed, self.epoch = augment, seed, epoch

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        where = f"shard {os.path.basename(row[PATH])}" if PATH in row else "ray dataset"
        sample = decode_row(row, self.manifest, where=where)
        rng = np.random.default_rng([self.seed, self.epoch, int(row[INDEX])]) if self.augment else None
        out = {key: value.numpy() for key, value in prepare(sample, self.manifest, self.modalities, self.augment,
                                                            rng).items()}
        if self.with_ids:
            out["sample_id"] = sample.sample_id
        if INDEX in row:  # training: which row it was (the order a worker saw can be read off its batches)
            out["index"] = np.int64(row[INDEX])
        return out


def ray_split_dataset(root: str | os.PathLike, split: str | Sequence[str], modalities: Sequence[str] | None = None,
                      with_ids: bool = False):
    """``ray.data.Dataset`` of model-ready rows, unaugmented: ``image`` [M, 3, H, W] and ``label`` (or
    ``target``), plus ``sample_id`` with ``with_ids`` (strings, which ``iter_torch_batches`` cannot batch)."""

    reader = DatasetReader(root)
    paths = [str(path) for path in reader.shard_paths(split)]
    chosen = select_modalities(reader.manifest, modalities)
    rows = read_shards(paths, reader.manifest)
    return rows.map(_PrepareRow(reader.manifest, chosen, with_ids))


class RayEpochs:
    """A training worker's rows of each epoch, in order, decoded and augmented by Ray Data tasks.

    The split is read once (still encoded, as ShardDataset holds it in-process); each epoch takes this worker's part
    of ``epoch_order`` from it in blocks of ``block_rows`` rows, in order, and puts them in the object store (which
    spills), so no sort runs and the worker holds no decoded rows but the batches in flight. Rows are told apart by
    ``sample_id`` (unique in a dataset); a row's index is its position in the split's shards, as in ShardDataset.
    """

    def __init__(self, root: str | os.PathLike, split: str | Sequence[str], modalities: Sequence[str] | None,
                 augment: Augment | None, seed: int, rank: int = 0, world_size: int = 1,
                 block_rows: int = ROW_GROUP_ROWS):
        reader = DatasetReader(root)
        self.manifest, self.modalities = reader.manifest, select_modalities(reader.manifest, modalities)
        shards = reader.read_shards(split)
        self.table = pa.concat_tables([table for _, table in shards])
        if PATH not in self.manifest.modalities:  # each row's shard, named in its decode errors
            paths = np.repeat([str(path) for path, _ in shards], [table.num_rows for _, table in shards])
            self.table = self.table.append_column(PATH, pa.array(paths.tolist(), pa.string()))
        ids = self.table.column("sample_id").to_pylist()
        if len(set(ids)) != len(ids):
            raise DatasetError(f"{root}: split {split} lists a sample_id twice; rows cannot be told apart")
        self.augment, self.seed, self.rank, self.world_size = augment, seed, rank, world_size
        self.block_rows = block_rows

    def __len__(self) -> int:
        return self.table.num_rows

    def dataset(self, epoch: int):
        """This worker's rows of ``epoch`` in its order; building it puts the epoch's encoded rows in the object
        store, iterating it decodes them."""
        import ray.data

        order = epoch_order(len(self), self.seed, epoch, self.rank, self.world_size)
        blocks = [self.table.take(part).append_column(INDEX, pa.array(part, pa.int64()))
                  for part in (order[start:start + self.block_rows] for start in range(0, len(order), self.block_rows))]
        rows = ray.data.from_blocks(blocks)
        # Its own copy of the DataContext (the process's one is shared with every other dataset and thread): blocks
        # keep their order through the map and the iterator, and a decode's DatasetError is raised as itself.
        rows.context.execution_options.preserve_order = True
        rows.context.raise_original_map_exception = True
        return rows.map(_PrepareRow(self.manifest, self.modalities, False, self.augment, self.seed, epoch))


_END = object()  # an epoch's last item in the feed's queue


class EpochBatches:
    """Batches of ``RayEpochs`` for epochs ``< num_epochs``, made by a background thread that starts the next epoch's
    pipeline as soon as it has made the current one's last batch: the next epoch's first batches are decoded while
    this one's last steps, its evaluation and its checkpoint run, not after.

    The thread is at most one epoch ahead of the batches handed out and keeps at most ``ahead`` made batches
    waiting. An epoch asked for out of turn (a restart) starts a new feed from it.
    """

    def __init__(self, epochs: RayEpochs, num_epochs: int, batch_size: int, device="auto", ahead: int = 2):
        self.epochs, self.num_epochs, self.batch_size, self.device = epochs, num_epochs, batch_size, device
        self.ahead = ahead
        self._feed: _Feed | None = None

    def start(self, epoch: int) -> None:
        """Begin making ``epoch``'s batches now, unless they are being made (the epoch a run starts or resumes at,
        while the run sets itself up)."""
        if not 0 <= epoch < self.num_epochs:
            raise ValueError(f"epoch {epoch}: the feed makes epochs 0 to {self.num_epochs - 1}")
        if self._feed is None or self._feed.next_epoch != epoch:
            self.close()
            self._feed = _Feed(self, epoch)

    def __call__(self, epoch: int):
        self.start(epoch)
        self._feed.next_epoch = epoch + 1
        return self._feed.batches()

    def close(self) -> None:
        if self._feed is not None:
            self._feed.stop()
            self._feed = None


class _Feed:
    """One background thread putting the batches of epochs ``first, first + 1, ...`` on a bounded queue."""

    def __init__(self, owner: EpochBatches, first: int):
        self.owner, self.next_epoch = owner, first
        self.queue: queue.Queue = queue.Queue(maxsize=owner.ahead)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(first,), daemon=True, name=f"epoch-feed-{first}")
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stopped.is_set():
            with contextlib.suppress(queue.Full):
                self.queue.put(item, timeout=0.1)
                return True
        return False

    def _run(self, first: int) -> None:
        owner = self.owner
        try:
            for epoch in range(first, owner.num_epochs):
                batches = iter(owner.epochs.dataset(epoch).iter_torch_batches(
                    batch_size=owner.batch_size, drop_last=True, device=owner.device))
                try:
                    for batch in batches:
                        if not self._put(batch):
                            return
                finally:  # a stopped feed ends its execution now, not when the iterator is collected
                    getattr(batches, "close", lambda: None)()
                if not self._put(_END):
                    return
        except BaseException as error:  # raised in the training thread, where the epoch's batches are asked for
            self._put(error)

    def batches(self):
        """The next epoch's batches."""
        try:
            while (item := self.queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        except BaseException:  # the loop stopped early or the feed failed: nothing more of this feed is wanted
            self.stop()
            self.next_epoch = None
            raise

    def stop(self, wait_s: float = 10.0) -> None:
        self.stopped.set()
        if self.thread is not threading.current_thread():
            self.thread.join(wait_s)  # a decode in flight may hold it; it ends once that is back
