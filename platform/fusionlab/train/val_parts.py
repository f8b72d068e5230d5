"""The per-epoch evaluation's rows on each worker: which images of the split a worker scores, in which batches.

Every worker reads the evaluation split's encoded shards itself (memory-mapped, as ``ShardDataset`` holds any split;
nothing decoded is kept) and scores its own part of it: the parts of N workers are disjoint and hold every image
once, for any N. A worker whose part is empty (more workers than images) scores nothing and still takes part in the
evaluation's collectives with empty sums. Ray Data's ``streaming_split(equal=True)``, which Ray runs used before,
dropped up to N - 1 images so that every worker had as many, and selected the best epoch on what was left.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import torch

from fusionlab.config import Config
from fusionlab.data.device_rows import DeviceRows, compact_loader
from fusionlab.data.torch_dataset import ShardDataset, loader_options, loader_workers

from .selection import evaluation_split

Batch = dict[str, torch.Tensor]


def val_part(num_rows: int, rank: int, world_size: int) -> range:
    """The row indices worker ``rank`` of ``world_size`` scores: one contiguous block, the first ``num_rows %
    world_size`` blocks one row longer. Contiguous, so a worker reads a run of row groups, and rank 0 (which keeps
    the example predictions for the plots) starts at the split's first image, as a single worker does."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not one of {world_size} workers")
    share, longer = divmod(num_rows, world_size)
    start = rank * share + min(rank, longer)
    return range(start, start + share + (rank < longer))


def val_batch_size(config: Config, image_size: tuple[int, int] | None) -> int:
    """``train.val_batch_size``; unset, ``train.batch_size`` for a dataset of one image size and 1 where sizes vary
    (the rule before the key existed, kept so that an unchanged config evaluates as it did)."""
    if config.train.val_batch_size is not None:
        return config.train.val_batch_size
    return config.train.batch_size if image_size else 1


def size_batches(sizes: Sequence[tuple[int, int]], indices: Sequence[int], batch_size: int) -> list[list[int]]:
    """``indices`` in batches of up to ``batch_size`` whose images share one size (``sizes[i]``: row i's), since a
    batch is one tensor: in order where every image has the same size; else grouped by size, the groups in the order
    of their first image. The sums evaluation makes do not depend on the order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index in indices:
        groups.setdefault(tuple(sizes[index]), []).append(index)
    return [group[start:start + batch_size] for group in groups.values()
            for start in range(0, len(group), batch_size)]


class ValBatches:
    """Worker ``rank`` of ``world_size``'s part of the per-epoch evaluation split (``selection.evaluation_split``),
    unaugmented, in batches of ``val_batch_size``; iterated once per evaluation, decoded in this process or in
    ``data.num_workers`` loader processes kept for the run (``torch_dataset.loader_workers``; pinned for CUDA), as
    compact rows normalised on ``device`` (``device_rows``)."""

    def __init__(self, config: Config, rank: int = 0, world_size: int = 1, device: torch.device | None = None,
                 cache_dir: str | os.PathLike | None = None, cpus: float | None = None):
        self.dataset = ShardDataset(config.data.path, evaluation_split(config), config.data.modalities,
                                    cache_dir=cache_dir, compact=True)  # with cache_dir, the node's one copy
        self.indices = val_part(len(self.dataset), rank, world_size)
        table = self.dataset.table
        sizes = list(zip(table.column("height").to_pylist(), table.column("width").to_pylist(), strict=True))
        self.batch_size = val_batch_size(config, self.dataset.manifest.image_size)
        self.batches = size_batches(sizes, self.indices, self.batch_size)
        device = torch.device("cpu") if device is None else device
        self.loader = compact_loader(self.dataset, batch_sampler=self.batches, generator=torch.Generator(),
                                     **loader_options(loader_workers(config.data.num_workers, device, cpus), device))
        self.rows = DeviceRows(self.dataset, device)

    def __iter__(self) -> Iterator[Batch]:
        # The one draw from torch's global generator a DataLoader of its own made per evaluation before the loader
        # was kept for the run: the dropout masks after an evaluation stay those of runs logged before.
        torch.empty((), dtype=torch.int64).random_()
        return self.rows.batches(self.loader)
