"""A plain torch Dataset over a split's shards, for use without Ray (same decoding and transforms)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch

from .reader import DatasetReader, decode_row
from .transforms import Augment, prepare, select_modalities


class ShardDataset(torch.utils.data.Dataset):
    """Rows stay encoded in memory-mapped Arrow; each item is decoded and transformed on access.

    Augmentation draws from a generator keyed on ``(seed, epoch, index)``: reproducible, different every epoch
    (call ``set_epoch``). ``split`` may be a list of splits: their union, in that order.
    """

    def __init__(self, root: str | os.PathLike, split: str | Sequence[str],
                 modalities: Sequence[str] | None = None, augment: Augment | None = None, seed: int = 0):
        reader = DatasetReader(root)
        self.manifest = reader.manifest
        self.split = split
        self.modalities = select_modalities(self.manifest, modalities)
        shards = reader.read_shards(split)
        self.table = pa.concat_tables([table for _, table in shards])
        self.shard_names = [path.name for path, _ in shards]
        self.shard_ends = np.cumsum([table.num_rows for _, table in shards])  # a row's shard, for error messages
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.table.slice(index, 1).to_pylist()[0]
        shard = self.shard_names[int(np.searchsorted(self.shard_ends, index, side="right"))]
        sample = decode_row(row, self.manifest, where=f"shard {shard}")
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.augment else None
        return prepare(sample, self.manifest, self.modalities, self.augment, rng)
