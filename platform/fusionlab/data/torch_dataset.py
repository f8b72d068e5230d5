"""A torch Dataset over a split's rows (its shards, or the node's copy of them), the order a training worker reads
them in each epoch, and the DataLoader settings that feed a device: what every training and evaluation loop reads
through, in-process or on Ray."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from .manifest import DatasetError
from .node_cache import mapped_table, shared_split
from .order import epoch_order
from .reader import DatasetReader, decode_row
from .sample import Sample
from .transforms import Augment, prepare, prepared_names, select_modalities


class ShardDataset(torch.utils.data.Dataset):
    """Rows stay encoded in memory-mapped Arrow; each item is decoded and transformed on access.

    Augmentation draws from a generator keyed on ``(seed, epoch, index)``: reproducible, different every epoch
    (call ``set_epoch``, or ask for item ``(epoch, index)``: what ``EpochOrder`` hands a DataLoader, whose worker
    processes would not see a ``set_epoch`` made after they started). ``split`` may be a list of splits: their
    union, in that order.

    With ``cache_dir`` the rows are the node's one copy of the split (``node_cache.shared_split``), memory-mapped
    without a copy; else the shards themselves, read by this process (Parquet pages decompressed onto its heap).

    ``compact``: an item is the row as stored (``compact_row``: uint8 RGB, uint16 depth, the label's own dtype),
    made model-ready where it is used (``device_rows.DeviceRows``, on the training device); else model-ready here.
    """

    def __init__(self, root: str | os.PathLike, split: str | Sequence[str],
                 modalities: Sequence[str] | None = None, augment: Augment | None = None, seed: int = 0,
                 cache_dir: str | os.PathLike | None = None, compact: bool = False):
        reader = DatasetReader(root)
        self.manifest = reader.manifest
        self.split = split
        self.modalities = select_modalities(self.manifest, modalities)
        self.decoded_names = prepared_names(self.manifest, self.modalities)  # the only modalities decoded
        self.compact = compact
        self.mapped: Path | None = None  # the node's copy this process maps, if any
        if cache_dir is None:
            shards = reader.read_shards(split)
            self.table = pa.concat_tables([table for _, table in shards])
            names, rows = [path.name for path, _ in shards], [table.num_rows for _, table in shards]
        else:
            self.mapped = shared_split(reader, split, cache_dir)
            self.table = mapped_table(self.mapped)
            shards = self.manifest.shards(split)
            names, rows = [Path(shard.file).name for shard in shards], [shard.rows for shard in shards]
            if sum(rows) != self.table.num_rows:
                raise DatasetError(f"{self.mapped}: {self.table.num_rows} rows, the manifest's split {split} has "
                                   f"{sum(rows)}; delete the file to have it rewritten")
        self.shard_names = names
        self.shard_ends = np.cumsum(rows)  # a row's shard, for error messages
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        row = self.table.slice(index, 1).to_pylist()[0]
        shard = self.shard_names[int(np.searchsorted(self.shard_ends, index, side="right"))]
        sample = decode_row(row, self.manifest, where=f"shard {shard}", names=self.decoded_names)
        if self.compact:
            return compact_row(sample, epoch, index)
        return prepare(sample, self.manifest, self.modalities, self.augment, augment_rng(self, epoch, index))


def augment_rng(dataset: ShardDataset, epoch: int, index: int) -> np.random.Generator | None:
    """Row ``index``'s augmentation draws in ``epoch``: the same wherever, and in whichever process, it is prepared."""
    return np.random.default_rng([dataset.seed, epoch, index]) if dataset.augment else None


def compact_row(sample: Sample, epoch: int, index: int) -> dict[str, Any]:
    """A decoded row as stored, for a DataLoader to batch as a list (sizes may differ before augmentation) and pin:
    ``images`` ``{modality: [H, W(, C)] tensor}`` in the stored dtype, ``label`` ``[H, W]`` in the label's, and the
    ``epoch`` and ``index`` that key its augmentation draws."""
    row: dict[str, Any] = {"epoch": epoch, "index": index,
                           "images": {name: _tensor(array) for name, array in sample.modalities.items()}}
    if sample.label is not None:
        row["label"] = _tensor(sample.label)
    return row


def _tensor(array: np.ndarray) -> torch.Tensor:
    # A raw-encoded image is a read-only view of the Arrow buffer; torch wants memory it may write.
    return torch.from_numpy(array if array.flags.writeable else array.copy())


class EpochOrder(torch.utils.data.Sampler):
    """Worker ``rank`` of ``world_size``'s rows of the epoch last set (``epoch``), in ``epoch_order``, as ``(epoch,
    row)`` items of a ``ShardDataset``. A DataLoader draws its indices in the process that iterates it, so one
    loader serves every epoch, its persistent worker processes decoding each with that epoch's augmentation draws."""

    def __init__(self, num_rows: int, seed: int, rank: int = 0, world_size: int = 1):
        self.num_rows, self.seed, self.rank, self.world_size = num_rows, seed, rank, world_size
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_rows // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(index)) for index in epoch_order(self.num_rows, self.seed, epoch, self.rank,
                                                              self.world_size))


def loader_workers(setting: int | None, device: torch.device, cpus: float | None = None) -> int:
    """``data.num_workers``: as set; unset, when training on CUDA, one loader process per CPU beyond the one the
    training process runs on, at most 4: of this process's cores, or of ``cpus`` (on Ray, the CPUs reserved for the
    worker, ``resources.cpus_per_worker``: more would take the node's other workers' cores). Else 0: on CPU the
    loader's processes would take the model's cores, and with 2 cores or fewer decoding keeps up in-process."""
    if setting is not None:
        return setting
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cpus is not None:
        cores = min(cores, int(cpus))
    return min(4, cores - 1) if device.type == "cuda" and cores > 2 else 0


def loader_options(num_workers: int, device: torch.device) -> dict:
    """The DataLoader arguments for ``num_workers`` processes feeding ``device``: workers kept across epochs (their
    start-up, ~1 s, once per run; forked on Linux, they share the parent's Arrow buffers), batches in pinned memory
    for CUDA, so that the loops' ``.to(device, non_blocking=True)`` copies overlap the step."""
    return {"num_workers": num_workers, "persistent_workers": num_workers > 0, "pin_memory": device.type == "cuda",
            **({"prefetch_factor": 2} if num_workers > 0 else {})}
