"""The torch Dataset and the Ray Data dataset read the same shards into the same tensors."""

import numpy as np
import pytest
import torch

from fusionlab.data import DatasetError, DatasetReader
from fusionlab.data.order import epoch_order
from fusionlab.data.torch_dataset import ShardDataset
from fusionlab.data.transforms import Augment


def test_torch_dataset_decodes_every_sample(tiny_dataset):
    out, samples = tiny_dataset
    dataset = ShardDataset(out, "val")
    assert len(dataset) == 4
    item = dataset[2]
    assert item["image"].shape == (2, 3, 12, 16) and item["label"].shape == (12, 16)
    want = samples[12]
    assert torch.equal(item["label"], torch.from_numpy(want.label.astype(np.int64)))
    torch.testing.assert_close(item["image"][1, 0], torch.from_numpy(want.modalities["depth"]).float() / 5000)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 2, 3, 12, 16)


def test_torch_dataset_augments_reproducibly_and_per_epoch(tiny_dataset):
    out, _ = tiny_dataset
    dataset = ShardDataset(out, "train", augment=Augment(crop=(8, 8)), seed=1)
    first, again = dataset[0], dataset[0]
    assert torch.equal(first["image"], again["image"])
    dataset.set_epoch(1)
    assert not torch.equal(first["image"], dataset[0]["image"])


def test_modality_selection_and_unknown_modality(tiny_dataset):
    out, _ = tiny_dataset
    assert ShardDataset(out, "val", modalities=["depth"])[0]["image"].shape == (1, 3, 12, 16)
    with pytest.raises(DatasetError, match=r"no modality \['hha'\]; it has \['rgb', 'depth'\]"):
        ShardDataset(out, "val", modalities=["rgb", "hha"])


@pytest.mark.slow
def test_ray_dataset_matches_torch_dataset(tiny_dataset, ray_local):
    from fusionlab.data.ray_dataset import ray_split_dataset

    out, _ = tiny_dataset
    rows = sorted(ray_split_dataset(out, "val", with_ids=True).take_all(), key=lambda row: row["sample_id"])
    reference = ShardDataset(out, "val")
    assert [row["sample_id"] for row in rows] == ["s010", "s011", "s012", "s013"]
    for index, row in enumerate(rows):
        assert np.array_equal(row["image"], reference[index]["image"].numpy())
        assert np.array_equal(row["label"], reference[index]["label"].numpy())


def test_a_list_of_splits_is_their_union_in_order(tiny_dataset):
    out, samples = tiny_dataset
    union = ShardDataset(out, ["val", "train"])
    assert len(union) == 14 and DatasetReader(out).manifest.rows(["val", "train"]) == 14
    assert torch.equal(union[0]["label"], torch.from_numpy(samples[10].label.astype(np.int64)))
    assert torch.equal(union[4]["label"], torch.from_numpy(samples[0].label.astype(np.int64)))
    with pytest.raises(DatasetError, match=r"has no split 'extra'; it has \['train', 'val'\]"):
        ShardDataset(out, ["train", "extra"])
    with pytest.raises(DatasetError, match="distinct splits"):
        ShardDataset(out, ["train", "train"])


def test_epoch_order_is_the_in_process_shuffle_dealt_to_workers():
    generator = torch.Generator().manual_seed(3 * 1000 + 2)  # the in-process path's loader before epoch_order
    loader = torch.utils.data.DataLoader(range(10), batch_size=1, shuffle=True, generator=generator)
    shuffled = [int(batch) for batch in loader]
    assert epoch_order(10, seed=3, epoch=2).tolist() == shuffled
    parts = [epoch_order(10, 3, 2, rank, 3).tolist() for rank in range(3)]
    assert parts == [shuffled[0:9:3], shuffled[1:9:3], shuffled[2:9:3]], "DistributedSampler's deal, equal parts"
    assert epoch_order(10, 3, 1).tolist() != shuffled
