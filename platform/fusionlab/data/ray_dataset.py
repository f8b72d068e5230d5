"""A Ray Data dataset per split over the manifest's shards, decoded and transformed like ShardDataset."""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from .manifest import Manifest
from .reader import DatasetReader, decode_row
from .transforms import Augment, prepare, select_modalities


class _PrepareRow:
    """Row function for ``Dataset.map``: decode, transform, return numpy arrays."""

    def __init__(self, manifest: Manifest, modalities: list[str], augment: Augment | None, seed: int | None,
                 with_ids: bool):
        self.manifest, self.modalities, self.augment, self.seed = manifest, modalities, augment, seed
        self.with_ids = with_ids

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        sample = decode_row(row, self.manifest, where="ray dataset")
        rng = None
        if self.augment is not None:
            # Ray re-executes the pipeline every epoch: seed=None gives fresh crops each time; a seed fixes each
            # sample's crop (reproducible, but the same every epoch).
            rng = np.random.default_rng() if self.seed is None else np.random.default_rng(
                [self.seed, zlib.crc32(sample.sample_id.encode())])
        row = {key: value.numpy() for key, value in prepare(sample, self.manifest, self.modalities, self.augment,
                                                            rng).items()}
        if self.with_ids:
            row["sample_id"] = sample.sample_id
        return row


def ray_split_dataset(root: str | os.PathLike, split: str, modalities: Sequence[str] | None = None,
                      augment: Augment | None = None, seed: int | None = None, with_ids: bool = False):
    """``ray.data.Dataset`` of model-ready rows: ``image`` [M, 3, H, W] and ``label`` (or ``target``), plus
    ``sample_id`` with ``with_ids`` (strings, which ``iter_torch_batches`` cannot batch)."""
    import ray.data

    reader = DatasetReader(root)
    paths = [str(path) for path in reader.shard_paths(split)]
    chosen = select_modalities(reader.manifest, modalities)
    dataset = ray.data.read_parquet(paths, shuffle=None)
    return dataset.map(_PrepareRow(reader.manifest, chosen, augment, seed, with_ids))
