"""Ray Data datasets over the manifest's shards, decoded and transformed like ShardDataset.

``ray_split_dataset``: a split as it is stored, unaugmented (validation). ``RayEpochs``: one training worker's rows
of each epoch, in the order and with the augmentation draws the in-process path uses (``epoch_order``; a generator
keyed on ``(seed, epoch, index)``), so a run is reproducible from its parameters on either path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .manifest import DatasetError, Manifest
from .order import epoch_order
from .reader import DatasetReader, decode_row
from .transforms import Augment, prepare, select_modalities
from .writer import ROW_GROUP_ROWS

INDEX, PLACE = "_index", "_place"  # a row's index in the split, its place in the worker's epoch order
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
    return read_shards(paths, reader.manifest).map(_PrepareRow(reader.manifest, chosen, with_ids))


class _Place:
    """``map_batches`` (pyarrow): this worker's rows of the epoch, with their split index and place in its order."""

    def __init__(self, index_of: dict[str, int], place: np.ndarray):
        self.index_of, self.place = index_of, place

    def __call__(self, batch: pa.Table) -> pa.Table:
        index = np.array([self.index_of[i] for i in batch.column("sample_id").to_pylist()], np.int64)
        place = self.place[index]
        mine = place >= 0
        kept = batch.filter(pa.array(mine))
        return kept.append_column(INDEX, pa.array(index[mine])).append_column(PLACE, pa.array(place[mine]))


class RayEpochs:
    """A training worker's rows, one Ray Data pipeline per epoch.

    Each epoch reads the shards, keeps this worker's part of ``epoch_order`` and sorts it into that order (in
    blocks of the writer's row-group size) — Ray Data's sort is an all-to-all exchange through the object store,
    which spills, so the worker holds only the batches in flight — then decodes and augments in Ray Data tasks.
    Rows are told apart by ``sample_id`` (unique in a dataset); a row's index is its position in the split's shards,
    as in ShardDataset.
    """

    def __init__(self, root: str | os.PathLike, split: str | Sequence[str], modalities: Sequence[str] | None,
                 augment: Augment | None, seed: int, rank: int = 0, world_size: int = 1):
        reader = DatasetReader(root)
        self.manifest, self.modalities = reader.manifest, select_modalities(reader.manifest, modalities)
        self.paths = [str(path) for path in reader.shard_paths(split)]
        ids = [i for path in self.paths for i in pq.read_table(path, columns=["sample_id"]).column(0).to_pylist()]
        self.index_of = {sample_id: index for index, sample_id in enumerate(ids)}
        if len(self.index_of) != len(ids):
            raise DatasetError(f"{root}: split {split} lists a sample_id twice; rows cannot be told apart")
        self.augment, self.seed, self.rank, self.world_size = augment, seed, rank, world_size

    def __len__(self) -> int:
        return len(self.index_of)

    def dataset(self, epoch: int):

        order = epoch_order(len(self), self.seed, epoch, self.rank, self.world_size)
        place = np.full(len(self), -1, np.int64)
        place[order] = np.arange(len(order))
        with _ordered_sort():
            rows = read_shards(self.paths, self.manifest)
        rows = rows.map_batches(_Place(self.index_of, place), batch_format="pyarrow", batch_size=None)
        rows = rows.sort(PLACE, boundaries=list(range(ROW_GROUP_ROWS, len(order), ROW_GROUP_ROWS)))
        return rows.map(_PrepareRow(self.manifest, self.modalities, False, self.augment, self.seed, epoch))


@contextlib.contextmanager
def _ordered_sort():
    """A dataset created inside (it copies the current DataContext) keeps its blocks' order through the map and
    the iterator after its sort, and sorts with tasks: the default hash shuffle starts a pool of aggregator actors
    on every execution, seconds per epoch on a small machine, for far more partitions than a worker's part needs."""
    from ray.data import DataContext
    from ray.data.context import ShuffleStrategy

    context = DataContext.get_current()
    saved = context.execution_options.preserve_order, context.shuffle_strategy
    context.execution_options.preserve_order = True
    context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    try:
        yield
    finally:
        context.execution_options.preserve_order, context.shuffle_strategy = saved
