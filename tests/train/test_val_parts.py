"""The per-epoch evaluation on N workers scores every image of its split exactly once, at ``train.val_batch_size``,
for images of one size or of many (train/val_parts.py), and a worker with nothing to score still joins the
collectives (``steps.scoring_model``: DDP's forward is not one of them)."""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import pytest
import torch
from train_configs import config_tree

from fusionlab.config import ConfigError
from fusionlab.data import DatasetWriter, LabelSpec, Manifest, Sample, depth_mm_spec, rgb_spec
from fusionlab.data.synthetic import write_synthetic
from fusionlab.data.torch_dataset import ShardDataset
from fusionlab.inference.servable import servable
from fusionlab.train.context import LocalContext
from fusionlab.train.evaluate import evaluate
from fusionlab.train.prepare import parse_config
from fusionlab.train.segmentation_task import build_model, validate
from fusionlab.train.val_parts import ValBatches, size_batches, val_batch_size, val_part

VARIABLE_VAL_SIZES = [(32, 48), (48, 64), (32, 48), (40, 40), (48, 64)]  # an odd count, three sizes


def write_sized(out, sizes: dict[str, list[tuple[int, int]]], seed: int = 0) -> Manifest:
    """An RGB-D segmentation dataset whose images have the given sizes, per split (random pixels and labels)."""
    rng = np.random.default_rng(seed)
    manifest = Manifest(name="sized", task="segmentation", modalities={"rgb": rgb_spec(), "depth": depth_mm_spec()},
                        label=LabelSpec(classes=("floor", "wall", "box")))
    with DatasetWriter(out, manifest) as writer:
        for split, shapes in sizes.items():
            for i, (height, width) in enumerate(shapes):
                label = rng.integers(0, 3, (height, width), dtype=np.uint8)
                label[: height // 4] = 255
                writer.write(Sample(f"{split}{i:03d}", split, {
                    "rgb": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                    "depth": rng.integers(500, 5000, (height, width), dtype=np.uint16)}, label))
    return Manifest.load(out)


@pytest.fixture(scope="module")
def variable_sized(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "sized"
    manifest = write_sized(out, {"train": [(40, 48), (48, 64), (32, 40), (48, 48)] * 2, "val": VARIABLE_VAL_SIZES,
                                 "test": [(32, 32), (40, 48)]})
    assert manifest.image_size is None
    return out


def labelled_pixels(data, split: str) -> int:
    dataset = ShardDataset(data, split)
    return sum(int((dataset[i]["label"] != 255).sum()) for i in range(len(dataset)))


@pytest.mark.parametrize("world_size", range(1, 10))
def test_the_workers_parts_are_disjoint_and_hold_every_row_once(world_size):
    for num_rows in range(21):
        parts = [val_part(num_rows, rank, world_size) for rank in range(world_size)]
        scored = [index for part in parts for index in part]
        assert sorted(scored) == list(range(num_rows)), (num_rows, parts)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1, "shares differ by one row at most"
        assert num_rows == 0 or parts[0][0] == 0, "rank 0 starts at the split's first image"


def test_a_rank_outside_the_workers_is_refused():
    with pytest.raises(ValueError, match="rank 2 is not one of 2 workers"):
        val_part(5, 2, 2)


def test_val_batch_size_defaults_to_the_training_batch_or_one_where_sizes_vary(small_synthetic):
    config = parse_config(config_tree(small_synthetic))
    assert val_batch_size(config, (48, 64)) == 4 and val_batch_size(config, None) == 1
    config = parse_config(config_tree(small_synthetic, train={"val_batch_size": 3}))
    assert val_batch_size(config, (48, 64)) == 3 and val_batch_size(config, None) == 3
    with pytest.raises(ConfigError, match=r"train\.val_batch_size: Input should be greater than or equal to 1"):
        parse_config(config_tree(small_synthetic, train={"val_batch_size": 0}))


def test_the_in_process_evaluation_batches_at_val_batch_size(small_synthetic, tmp_path):
    config = parse_config(config_tree(small_synthetic, train={"val_batch_size": 3}))
    batches = list(LocalContext(config, tmp_path, echo=False).val_batches())
    assert [len(batch["label"]) for batch in batches] == [3, 3, 2]


def test_batches_hold_one_image_size_each():
    sizes = [(2, 2), (3, 3), (2, 2), (2, 2), (3, 3), (4, 4)]
    assert size_batches(sizes, range(6), 2) == [[0, 2], [3], [1, 4], [5]]
    assert size_batches([(2, 2)] * 5, range(1, 5), 3) == [[1, 2, 3], [4]]
    assert size_batches(sizes, range(0), 2) == []


@pytest.mark.parametrize("world_size", [1, 2, 7])
def test_each_worker_batches_its_part_of_a_variable_size_split_by_size(variable_sized, world_size):
    config = parse_config(config_tree(variable_sized, data={"crop": [32, 32]},
                                      train={"val_batch_size": 2}, resources={"num_workers": world_size}))
    seen = []
    for rank in range(world_size):
        rows = ValBatches(config, rank, world_size)
        for batch in rows:  # a batch is one tensor: its images share a size
            assert batch["image"].shape[0] <= 2 and batch["image"].shape[-2:] == batch["label"].shape[-2:]
        seen += [index for batch in rows.batches for index in batch]
        assert all(len({VARIABLE_VAL_SIZES[i] for i in batch}) == 1 for batch in rows.batches)
    assert sorted(seen) == list(range(len(VARIABLE_VAL_SIZES)))


class ProcessGroupContext:
    """What ``validate`` needs of a worker, its sums made over a real torch process group."""

    device = torch.device("cpu")

    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size = rank, world_size

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        torch.distributed.all_reduce(tensor)
        return tensor


def validate_under_ddp(rank: int, data: str, rendezvous: str, out: str) -> None:
    """A DDP worker (gloo) of two: rank 0 scores the whole split, rank 1 nothing; then the split in two parts with
    rank 1's BN statistics made different (the evaluation scores rank 0's, as its checkpoint holds)."""
    torch.distributed.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=2,
                                         timeout=timedelta(seconds=30))
    try:
        config = parse_config(config_tree(data, resources={"num_workers": 2}))
        manifest = Manifest.load(data)
        torch.manual_seed(0)
        core = build_model(config, manifest)
        # DDP's first forward would broadcast the buffers (``require_forward_param_sync`` starts set)
        model = torch.nn.parallel.DistributedDataParallel(core)
        dataset = ShardDataset(data, "val", config.data.modalities)
        loader = torch.utils.data.DataLoader
        context = ProcessGroupContext(rank, 2)
        alone = validate(model, loader(dataset, batch_size=3) if rank == 0 else [], config, context, manifest)
        if rank == 1:
            for module in core.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.running_mean.add_(1.0)
        part = torch.utils.data.Subset(dataset, list(val_part(len(dataset), rank, 2)))
        shared = validate(model, loader(part, batch_size=2), config, context, manifest)
        torch.save({"alone": alone[:2], "shared": shared[:2]}, f"{out}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_a_ddp_worker_with_nothing_to_score_still_joins_the_evaluation(tmp_path):
    data = tmp_path / "synthetic"
    write_synthetic(data, train=4, val=5, test=2, size=(48, 64), seed=0)
    context = torch.multiprocessing.spawn(validate_under_ddp, args=(str(data), f"file://{tmp_path}/rendezvous",
                                                                    str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 240
    try:
        while not context.join(timeout=5):
            assert time.monotonic() < deadline, "the workers did not finish: a collective was left unmatched"
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    config = parse_config(config_tree(data))
    manifest = Manifest.load(data)
    torch.manual_seed(0)
    whole = evaluate(servable(build_model(config, manifest), manifest, config.model.eval_upsample), data, "val")
    counted = labelled_pixels(data, "val")
    for result in results:
        for metrics, matrix in (result["alone"], result["shared"]):
            assert int(matrix.sum()) == counted, "every labelled pixel of the split counted once"
            for key in ("miou", "pixel_acc", "mean_acc"):
                assert metrics[f"val/{key}"] == pytest.approx(whole[key], abs=1e-6), key


@pytest.mark.slow
@pytest.mark.parametrize("sizes", ["fixed", "variable"])
def test_ray_evaluation_scores_every_image_of_an_odd_split_once(sizes, variable_sized, tmp_path, ray_local):
    """Two Ray workers, five val images: the logged figures are the whole split's (Ray Data's equal split dropped
    one); images of several sizes, batched by size, are scored too."""
    from mlflow.tracking import MlflowClient

    from fusionlab.tracking import default_tracking_uri, load_model
    from fusionlab.train.driver import run_ray

    train = {"epochs": 1, "batch_size": 2}
    if sizes == "fixed":
        data, crop = tmp_path / "synthetic", [48, 64]
        write_synthetic(data, train=8, val=5, test=2, size=(48, 64), seed=0)
    else:
        data, crop = variable_sized, [32, 32]
        train["val_batch_size"] = 2
    run_ray(parse_config(config_tree(data, data={"crop": crop}, train=train, resources={"num_workers": 2},
                                     tracking={"experiment": "val-parts"})), tmp_path / "runs")
    uri = default_tracking_uri(tmp_path / "runs")
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("val-parts").experiment_id])
    assert run.info.status == "FINISHED"
    whole = evaluate(load_model(f"runs:/{run.info.run_id}/model", uri), data, "val")
    for key in ("miou", "pixel_acc", "mean_acc"):
        (logged,) = [m.value for m in client.get_metric_history(run.info.run_id, f"val/{key}") if m.step == 0]
        assert logged == pytest.approx(whole[key], abs=1e-6), key
