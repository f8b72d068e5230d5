"""A split as a Ray Data dataset over the manifest's shards, decoded and transformed like ShardDataset, unaugmented
(``ray_split_dataset``). Ray training workers do not use it: they decode the node's shared copy of a split themselves
(``train.context.RayWorkerContext``, ``node_cache``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .manifest import Manifest
from .reader import DatasetReader, decode_row
from .transforms import prepare, select_modalities

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
    """Row function for ``Dataset.map``: decode, transform (unaugmented), return numpy arrays."""

    def __init__(self, manifest: Manifest, modalities: list[str], with_ids: bool):
        self.manifest, self.modalities, self.with_ids = manifest, modalities, with_ids

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        where = f"shard {os.path.basename(row[PATH])}" if PATH in row else "ray dataset"
        sample = decode_row(row, self.manifest, where=where)
        out = {key: value.numpy() for key, value in prepare(sample, self.manifest, self.modalities).items()}
        if self.with_ids:
            out["sample_id"] = sample.sample_id
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
