"""Compact rows to model-ready batches on the training device.

A DataLoader over ``ShardDataset(compact=True)`` hands lists of rows as stored (``torch_dataset.compact_row``: uint8
RGB, uint16 depth, the label's dtype), pinned for CUDA: a quarter of the bytes of float32 images (an eighth for
labels against int64) to move between processes and onto the device. ``DeviceRows`` copies them there without
blocking, then normalises and augments each there: the operations and augmentation draws of ``transforms.prepare``,
so a batch made here on the CPU equals, bit for bit, the one ``ShardDataset`` prepares itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from .torch_dataset import ShardDataset, augment_rng
from .transforms import prepare_values

Batch = dict[str, torch.Tensor]


class DeviceRows:
    """``dataset``'s compact rows, as a DataLoader batches them (``collate_fn=list``), made into one batch on
    ``device`` with the dataset's current augmentation."""

    def __init__(self, dataset: ShardDataset, device: torch.device):
        if not dataset.compact:
            raise ValueError("DeviceRows prepares the rows of a ShardDataset(compact=True)")
        self.dataset, self.device = dataset, device

    def __call__(self, rows: list[dict[str, Any]]) -> Batch:
        prepared = [self.prepare(row) for row in rows]
        return {key: torch.stack([one[key] for one in prepared]) for key in prepared[0]}

    def prepare(self, row: dict[str, Any]) -> Batch:
        dataset = self.dataset
        images = {name: image.to(self.device, non_blocking=True) for name, image in row["images"].items()}
        label = row["label"].to(self.device, non_blocking=True) if "label" in row else None
        return prepare_values(images, label, dataset.manifest, dataset.modalities, dataset.augment,
                              augment_rng(dataset, row["epoch"], row["index"]))

    def batches(self, loader: Iterable[list[dict[str, Any]]]) -> Iterator[Batch]:
        for rows in loader:
            yield self(rows)


def compact_loader(dataset: ShardDataset, **options) -> torch.utils.data.DataLoader:
    """A DataLoader handing ``dataset``'s compact rows as lists (``options``: the sampler, batch size, workers...)."""
    if not dataset.compact:
        raise ValueError("compact_loader batches the rows of a ShardDataset(compact=True)")
    return torch.utils.data.DataLoader(dataset, collate_fn=list, **options)
