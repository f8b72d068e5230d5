"""Distributed evaluation without Ray: two simulated workers, each scoring its share of a split, whose confusion
matrices are summed as ``all_reduce_sum`` sums them on Ray Train. The figures must be those of the whole split, as
``fusionlab evaluate`` scores the same model (a Ray run of two workers: tests/train/test_train_ray.py)."""

from __future__ import annotations

import threading

import pytest
import torch
from train_configs import config_tree

from fusionlab.data import Manifest
from fusionlab.data.torch_dataset import ShardDataset
from fusionlab.inference.servable import servable
from fusionlab.train.evaluate import evaluate
from fusionlab.train.prepare import parse_config
from fusionlab.train.segmentation_task import build_model, validate


class SimulatedWorkers:
    """What two Ray Train workers' collectives do: every worker waits for the other and gets the sum (or the
    concatenation) of both workers' tensors."""

    def __init__(self, world_size: int = 2):
        self.world_size = world_size
        self._barrier = threading.Barrier(world_size)
        self._parts: dict[int, torch.Tensor] = {}

    def _exchange(self, rank: int, tensor: torch.Tensor) -> list[torch.Tensor]:
        self._parts[rank] = tensor.clone()
        self._barrier.wait()
        parts = [self._parts[r] for r in range(self.world_size)]
        self._barrier.wait()  # everyone has read before a next exchange overwrites
        return parts

    def context(self, rank: int) -> WorkerContextFake:
        return WorkerContextFake(self, rank)


class WorkerContextFake:
    device = torch.device("cpu")

    def __init__(self, workers: SimulatedWorkers, rank: int):
        self.workers, self.rank, self.world_size = workers, rank, workers.world_size
        self.reduced: list[torch.Tensor] = []

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        self.reduced.append(tensor.clone())
        return torch.stack(self.workers._exchange(self.rank, tensor)).sum(0)

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.workers._exchange(self.rank, tensor))


def batches(dataset: ShardDataset, indices: list[int], size: int):
    subset = torch.utils.data.Subset(dataset, indices)
    return list(torch.utils.data.DataLoader(subset, batch_size=size))


def in_threads(work, count: int) -> list:
    """``work(rank)`` for every rank at once (collectives block until all ranks arrive); results in rank order."""
    results: dict[int, object] = {}
    threads = [threading.Thread(target=lambda rank=rank: results.__setitem__(rank, work(rank)))
               for rank in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == list(range(count)), "a simulated worker did not finish"
    return [results[rank] for rank in range(count)]


def run_workers(model, config, manifest, shares):
    workers = SimulatedWorkers(len(shares))
    contexts = [workers.context(rank) for rank in range(len(shares))]
    results = in_threads(lambda rank: validate(model, shares[rank], config, contexts[rank], manifest, prefix="test"),
                         len(shares))
    return results, contexts


def test_two_workers_scoring_halves_of_the_test_split_report_the_whole_splits_figures(small_synthetic):
    config = parse_config(config_tree(small_synthetic, train={"selection": "best_test"},
                                      resources={"num_workers": 2}))
    manifest = Manifest.load(small_synthetic)
    torch.manual_seed(0)
    model = build_model(config, manifest)
    dataset = ShardDataset(small_synthetic, "test", config.data.modalities)
    # Uneven shares in batches of another size than evaluate's: the sums must not depend on either.
    shares = [batches(dataset, [0, 2, 4], 2), batches(dataset, [1, 3, 5, 6, 7], 3)]
    (first, second), contexts = run_workers(model, config, manifest, shares)

    metrics, matrix, _ = first
    assert second[0] == metrics and torch.equal(second[1], matrix), "every worker reports the same figures"
    whole = evaluate(servable(model, manifest, config.model.eval_upsample), small_synthetic, "test")
    for key in ("miou", "pixel_acc", "mean_acc"):
        assert metrics[f"test/{key}"] == pytest.approx(whole[key], abs=1e-6), key
    assert not any(key.startswith("val/") for key in metrics), "test scores are never called val"
    labels = torch.stack([dataset[i]["label"] for i in range(len(dataset))])
    counted = int((labels != manifest.label.ignore_index).sum())
    assert int(matrix.sum()) == counted, "the ensemble's matrix counts every labelled pixel of the split once"
    own = [int(context.reduced[0][-1].sum()) for context in contexts]
    assert 0 < own[0] < counted and own[0] + own[1] == counted, "each worker counted only its own share"


@pytest.mark.parametrize("selection, split", [("best_test", "test"), ("best_val", "val")])
def test_ray_workers_evaluate_each_epoch_on_the_split_selection_reads(small_synthetic, tmp_path, monkeypatch,
                                                                      stand_in_trainer, selection, split):
    """Each Ray worker reads its part of the per-epoch evaluation split from the shards itself
    (``val_parts.ValBatches``, as ``RayWorkerContext`` builds it); the driver hands the workers no Ray Data dataset
    (no Ray started)."""
    from fusionlab.train import driver
    from fusionlab.train.val_parts import ValBatches

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    config = parse_config(config_tree(small_synthetic, train={"selection": selection},
                                      resources={"num_workers": 2, "use_gpu": False}))
    assert driver.run_ray(config, tmp_path / "runs") == "fitted"
    assert stand_in_trainer.get("datasets") is None
    parts = [ValBatches(config, rank, 2) for rank in range(2)]
    assert [part.dataset.split for part in parts] == [split, split]
    assert [list(part.indices) for part in parts] == [[0, 1, 2, 3], [4, 5, 6, 7]]


@pytest.mark.parametrize("shares", [([0, 1, 2], [3, 4, 5, 6, 7]), (list(range(8)), [])], ids=["halves", "one-empty"])
def test_two_translation_workers_score_fid_and_l1_over_the_whole_split(tmp_path, shares):
    """Each worker generates for its share of val (one may have none: more workers than images); the features
    gathered from both give the FID, KID and L1 of the whole split, as one worker scoring all of it gets them."""
    from fusionlab.data.synthetic_translation import write_synthetic_translation
    from fusionlab.train.translation import evaluate_translation
    from fusionlab.train.translation_task import build_generator, feature_extractor

    data = tmp_path / "data"
    manifest = write_synthetic_translation(data, train=4, val=8, test=2, size=(32, 32), seed=1)
    config = parse_config({"data": {"path": str(data), "modalities": ["normal", "reshading"],
                                    "scale_range": [1.0, 1.0]},
                           "model": {"name": "cen", "backbone": "unet_mini"},
                           "train": {"epochs": 1, "batch_size": 2, "fid": {"features": "local", "kid_subsets": 10}},
                           "resources": {"num_workers": 2}})
    torch.manual_seed(0)
    generator = build_generator(config, manifest)
    extractor = feature_extractor(config, torch.device("cpu"))
    dataset = ShardDataset(data, "val", config.data.modalities)

    def score(shares, gathers):
        return in_threads(lambda rank: evaluate_translation(
            generator, shares[rank], config.train.fid, torch.device("cpu"), manifest, list(config.data.modalities),
            extractor, gathers[rank])[0], len(shares))

    workers = SimulatedWorkers(2)
    first, second = score([batches(dataset, share, 2) for share in shares],
                          [workers.context(rank).all_gather for rank in range(2)])
    (whole,) = score([batches(dataset, list(range(len(dataset))), 4)], [lambda tensor: tensor])
    # the same figures (to rounding: the two simulated workers share this process's BLAS, which two threads
    # computing at once may reduce in another order; Ray's workers are processes of their own)
    assert first.keys() == second.keys() and first == pytest.approx(second, rel=1e-6), "every worker, one figure"
    assert {"val/fid", "val/kid", "val/l1"} <= set(first)
    for key, value in whole.items():
        assert first[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
