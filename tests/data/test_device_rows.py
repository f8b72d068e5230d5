"""Compact rows: the loader hands rows as stored (uint8 RGB, uint16 depth, the label's dtype) and ``DeviceRows``
makes them the same batches, bit for bit, that ``ShardDataset`` prepares itself — augmented or not, one image size or
several, segmentation or translation — in a quarter of the bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_data import make_manifest, make_samples

from fusionlab.data import DatasetWriter
from fusionlab.data.device_rows import DeviceRows, compact_loader
from fusionlab.data.synthetic_translation import write_synthetic_translation
from fusionlab.data.torch_dataset import EpochOrder, ShardDataset
from fusionlab.data.transforms import Augment


def write_tiny(root, encoding: str, sizes=((12, 16),)):
    with DatasetWriter(root, make_manifest(encoding)) as writer:
        for i, size in enumerate(sizes):
            for sample in make_samples(6, size=size, seed=i):
                sample.sample_id = f"{size[0]}x{size[1]}-{sample.sample_id}"
                writer.write(sample)
    return root


def batches_both_ways(root, augment: Augment | None, batch_size: int, epoch: int, modalities=None):
    """The epoch's batches prepared by the dataset (the reference) and by DeviceRows from the compact rows."""
    reference = ShardDataset(root, "train", modalities, augment=augment, seed=7)
    compact = ShardDataset(root, "train", modalities, augment=augment, seed=7, compact=True)
    order = EpochOrder(len(reference), seed=7)
    order.epoch = epoch
    expected = list(torch.utils.data.DataLoader(reference, batch_size=batch_size, sampler=order))
    rows = DeviceRows(compact, torch.device("cpu"))
    got = list(rows.batches(compact_loader(compact, batch_size=batch_size, sampler=order)))
    return expected, got


def assert_same(expected, got):
    assert len(expected) == len(got) > 0
    for want, have in zip(expected, got, strict=True):
        assert want.keys() == have.keys()
        for key in want:
            assert want[key].dtype == have[key].dtype and torch.equal(want[key], have[key]), key


@pytest.mark.parametrize("encoding", ["png", "raw"])
@pytest.mark.parametrize("resize", ["bilinear", "reference"])
def test_augmented_batches_equal_the_datasets_own(tmp_path, encoding, resize):
    root = write_tiny(tmp_path / "tiny", encoding)
    augment = Augment(crop=(10, 12), scale_range=(0.6, 1.5), resize=resize, pad="centre")
    for epoch in (0, 3):
        assert_same(*batches_both_ways(root, augment, batch_size=3, epoch=epoch))


def test_unaugmented_rows_of_several_sizes_equal_the_datasets_own(tmp_path):
    root = write_tiny(tmp_path / "tiny", "png", sizes=((12, 16), (9, 14)))
    dataset = ShardDataset(root, "train", compact=True)
    rows = DeviceRows(dataset, torch.device("cpu"))
    reference = ShardDataset(root, "train")
    for index in (0, 5, 6, 11):  # one batch per image, of either size
        got = rows([dataset[index]])
        want = reference[index]
        assert {key: value[0].shape for key, value in got.items()} == {key: value.shape for key, value in
                                                                        want.items()}
        assert all(torch.equal(got[key][0], want[key]) for key in want)


def test_one_modality_is_the_only_one_decoded_and_sent(tmp_path):
    root = write_tiny(tmp_path / "tiny", "png")
    row = ShardDataset(root, "train", ["rgb"], compact=True)[0]
    assert list(row["images"]) == ["rgb"]
    assert_same(*batches_both_ways(root, Augment(crop=(8, 8)), batch_size=2, epoch=1, modalities=["rgb"]))


def test_rows_travel_in_their_stored_dtypes(tmp_path):
    root = write_tiny(tmp_path / "tiny", "raw")
    row = ShardDataset(root, "train", compact=True)[(2, 4)]
    assert (row["epoch"], row["index"]) == (2, 4)
    assert row["images"]["rgb"].dtype == torch.uint8 and row["images"]["depth"].dtype == torch.uint16
    assert row["label"].dtype == torch.uint8
    stored = sum(t.numel() * t.element_size() for t in [*row["images"].values(), row["label"]])
    prepared = ShardDataset(root, "train")[4]
    float_bytes = sum(t.numel() * t.element_size() for t in prepared.values())
    assert float_bytes / stored >= 4, "float32 images (depth as 3 channels) and an int64 label"
    raw = make_samples(6)[4]
    assert np.array_equal(row["images"]["depth"].numpy()[:, :, 0], raw.modalities["depth"])


def test_translation_targets_come_through_compact_rows(tmp_path):
    root = tmp_path / "translation"
    write_synthetic_translation(root, train=4, val=0, test=0, size=(16, 16), seed=1)
    assert_same(*batches_both_ways(root, Augment(crop=(12, 12)), batch_size=2, epoch=0))


def test_rows_go_through_loader_processes_unchanged(tmp_path):
    root = write_tiny(tmp_path / "tiny", "png")
    dataset = ShardDataset(root, "train", augment=Augment(crop=(8, 8)), seed=7, compact=True)
    order = EpochOrder(len(dataset), seed=7)
    rows = DeviceRows(dataset, torch.device("cpu"))
    here = list(rows.batches(compact_loader(dataset, batch_size=2, sampler=order)))
    forked = list(rows.batches(compact_loader(dataset, batch_size=2, sampler=order, num_workers=2)))
    assert_same(here, forked)


def test_only_compact_datasets_are_accepted(tmp_path):
    root = write_tiny(tmp_path / "tiny", "png")
    with pytest.raises(ValueError, match="compact=True"):
        DeviceRows(ShardDataset(root, "train"), torch.device("cpu"))
    with pytest.raises(ValueError, match="compact=True"):
        compact_loader(ShardDataset(root, "train"), batch_size=2)
