"""A training batch with no labelled pixel: every label pixel the ignore index.

Cross-entropy averages over the labelled pixels, so over none it is 0/0 = NaN in torch, as in the references (which
would train on NaN from there). fusionlab does not skip such a batch (the run would silently differ from the
references'); it refuses the run, and says why instead of blaming the learning rate: the split, the ignore index, and
the samples whose every pixel is it (or, when there are none, that the crops fell on unlabelled regions).

A step's check is one reduction on the device, summed with the epoch's losses (``device.EpochTotals``); the split's
labels are read only when the epoch ends with such a step, to name the samples.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from fusionlab.data import DatasetError
from fusionlab.errors import FusionlabError

SHOWN = 8  # sample ids named in the message


class NoLabelledPixels(DatasetError, FusionlabError):
    """Training batches whose every label pixel is the ignore index (their loss is NaN): the dataset's to fix."""


def unlabelled(label: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """1.0 where the batch ``label`` has no pixel other than ``ignore_index``, else 0.0 (on the device, no sync)."""
    return (~(label != ignore_index).any()).double()


def unlabelled_samples(root: str | os.PathLike, split: str | Sequence[str], ignore_index: int
                       ) -> tuple[list[str], int]:
    """The ids of ``split``'s samples whose every label pixel is ``ignore_index``, and how many samples it has
    (only the label column is read and decoded)."""
    import numpy as np
    import pyarrow.parquet as pq

    from fusionlab.data import DatasetReader
    from fusionlab.data.codec import decode

    reader = DatasetReader(root)
    spec = reader.manifest.label
    found, total = [], 0
    for path in reader.shard_paths(split):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=32, columns=["sample_id", "height", "width",
                                                                                "label"]):
            for row in batch.to_pylist():
                total += 1
                label = decode(row["label"], spec.encoding, spec.dtype, 1, row["height"], row["width"],
                               where=f"shard {path.name}, sample {row['sample_id']!r}, label")
                if not np.any(label != ignore_index):
                    found.append(row["sample_id"])
    return found, total


def no_labelled_pixels(steps_without: int, steps: int, epoch: int, root: str | os.PathLike,
                       split: str | Sequence[str], ignore_index: int) -> NoLabelledPixels:
    """The error for an epoch in which ``steps_without`` of ``steps`` batches had no labelled pixel."""
    where = f"split {split!r} of {root}"
    head = (f"{steps_without} of {steps} training steps at epoch {epoch} had a batch with no labelled pixel (every "
            f"label pixel the ignore index {ignore_index}), so their loss (cross-entropy over no pixel) was NaN")
    try:
        found, total = unlabelled_samples(root, split, ignore_index)
    except Exception as error:  # noqa: BLE001 - the diagnosis without the names rather than another error
        return NoLabelledPixels(f"{head}; the samples of {where} could not be read to name them "
                                f"({type(error).__name__}: {error})")
    shown = ", ".join(repr(name) for name in found[:SHOWN]) + (f", ... ({len(found) - SHOWN} more)"
                                                               if len(found) > SHOWN else "")
    if found and len(found) == total:
        return NoLabelledPixels(f"{where} has no labelled pixel: every label pixel of its {total} sample(s) is the "
                                f"ignore index {ignore_index} ({shown}); {head}. Check the labels the dataset was "
                                f"converted from (`fusionlab data convert`) and label.ignore_index in its manifest")
    if found:
        return NoLabelledPixels(f"{head}: in {where}, every label pixel of {len(found)} of {total} samples is the "
                                f"ignore index {ignore_index} ({shown}); label them or leave them out of the split")
    return NoLabelledPixels(f"{head}; no sample of {where} is entirely {ignore_index}, so the random crops "
                            f"(data.crop) fell on unlabelled regions only: a larger data.crop or train.batch_size "
                            f"makes a batch without a labelled pixel unlikely")
