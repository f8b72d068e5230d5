"""The torch Dataset and the Ray Data dataset read the same shards into the same tensors."""

import time

import numpy as np
import pytest
import torch

from fusionlab.data import DatasetError, DatasetReader
from fusionlab.data.order import epoch_order
from fusionlab.data.ray_dataset import EpochBatches, RayEpochs
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


def training_rows(epochs: RayEpochs, epoch: int) -> dict[str, torch.Tensor]:
    batches = list(epochs.dataset(epoch).iter_torch_batches(batch_size=3, drop_last=False))
    return {key: torch.cat([b[key] for b in batches]) for key in ("index", "image", "label")}


@pytest.mark.slow
def test_ray_epochs_follow_the_in_process_order_and_augmentation(tiny_dataset, ray_local):
    """One Ray worker trains on exactly the rows, order and crops of the in-process path; epochs differ; two
    workers get disjoint seeded parts."""
    out, _ = tiny_dataset
    augment = Augment(crop=(8, 8))
    local = ShardDataset(out, ["train", "val"], augment=augment, seed=5)
    epochs = RayEpochs(out, ["train", "val"], None, augment, seed=5)
    seen = []
    for epoch in range(2):
        rows = training_rows(epochs, epoch)
        local.set_epoch(epoch)
        order = epoch_order(len(local), 5, epoch)
        assert rows["index"].tolist() == order.tolist()
        expected = [local[int(i)] for i in order]
        assert torch.equal(rows["image"], torch.stack([e["image"] for e in expected]))
        assert torch.equal(rows["label"], torch.stack([e["label"] for e in expected]))
        seen.append(rows["index"].tolist())
    assert seen[0] != seen[1] and sorted(seen[0]) == sorted(seen[1]) == list(range(14))
    parts = [training_rows(RayEpochs(out, "train", None, augment, 5, rank, 2), 0)["index"].tolist()
             for rank in range(2)]
    assert parts == [epoch_order(10, 5, 0, rank, 2).tolist() for rank in range(2)]
    assert not set(parts[0]) & set(parts[1]) and len(parts[0]) == len(parts[1]) == 5


def wait_for(condition, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


@pytest.mark.slow
def test_epoch_batches_make_the_next_epoch_before_it_is_asked_for_and_go_no_further(tiny_dataset, ray_local):
    out, _ = tiny_dataset
    epochs = RayEpochs(out, "train", None, Augment(crop=(8, 8)), seed=5)
    expected = {epoch: training_rows(epochs, epoch) for epoch in range(3)}
    built, dataset = [], epochs.dataset
    epochs.dataset = lambda epoch: built.append(epoch) or dataset(epoch)
    feed = EpochBatches(epochs, num_epochs=3, batch_size=3, ahead=2)

    def rows(epoch: int) -> dict[str, torch.Tensor]:
        batches = list(feed(epoch))
        assert [len(batch["index"]) for batch in batches] == [3, 3, 3], "10 rows: full batches only"
        return {key: torch.cat([b[key] for b in batches]) for key in ("index", "image", "label")}

    def assert_rows(epoch: int, got: dict[str, torch.Tensor]) -> None:
        assert got["index"].tolist() == expected[epoch]["index"][:9].tolist() == epoch_order(10, 5, epoch)[:9].tolist()
        assert torch.equal(got["image"], expected[epoch]["image"][:9])
        assert torch.equal(got["label"], expected[epoch]["label"][:9])

    feed.start(0)
    assert wait_for(lambda: feed._feed.queue.full()), "the first epoch's first batches are made once it is started"
    assert_rows(0, rows(0))
    assert wait_for(lambda: feed._feed.queue.full()), "epoch 1's first batches are made before it is asked for"
    time.sleep(1.0)
    assert built == [0, 1], "the feed is one epoch ahead at most"
    assert_rows(1, rows(1))
    assert_rows(2, rows(2))
    time.sleep(0.5)
    assert built == [0, 1, 2], "nothing is made past the last epoch"
    assert_rows(1, rows(1))  # out of turn: the feed starts again from it
    assert built[:4] == [0, 1, 2, 1]

    def broken(epoch: int):
        raise DatasetError(f"epoch {epoch}: a bad shard")

    epochs.dataset = broken
    with pytest.raises(DatasetError, match="epoch 0: a bad shard"):
        next(iter(feed(0)))
    with pytest.raises(ValueError, match="epoch 3: the feed makes epochs 0 to 2"):
        feed(3)
    epochs.dataset = dataset
    feed.start(1)
    thread = feed._feed.thread
    feed.close()
    assert not thread.is_alive(), "a closed feed's thread has ended"
