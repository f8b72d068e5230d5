"""A Ray run's workers on one node share one copy of each split they read (data/node_cache.py), not one each."""

import json
import os
from pathlib import Path

import pytest
from train_configs import config_tree

from fusionlab.data.node_cache import cache_name
from fusionlab.data.reader import DatasetReader
from fusionlab.train.driver import run_ray
from fusionlab.train.prepare import parse_config
from fusionlab.train.selection import evaluation_split

pytestmark = pytest.mark.slow


def test_two_workers_on_one_node_write_one_copy_of_each_split(small_synthetic, tmp_path, ray_local):
    cache = tmp_path / "node-cache"
    config = parse_config(config_tree(small_synthetic, data={"node_cache": str(cache)},
                                      train={"epochs": 1, "smoke_steps": 2},
                                      resources={"num_workers": 2, "use_gpu": False}, tracking={"experiment": "cache"}))
    run_ray(config, tmp_path / "runs")
    reader = DatasetReader(small_synthetic)
    written = sorted(path.name for path in cache.iterdir() if not path.name.endswith(".lock"))
    assert written == sorted([cache_name(reader, "train"), cache_name(reader, evaluation_split(config))]), \
        "one file per split for both workers, no staged file left"


def test_two_workers_on_one_node_map_one_copy_without_copying_it(small_synthetic, tmp_path, ray_local):
    import ray.train
    from ray.train.torch import TorchTrainer

    # Defined in the test, so that it is pickled by value: Ray's workers cannot import this test module.
    def report_mappings(args: dict) -> None:
        """A training worker's process, the file it maps for each split, and whether the image columns of the
        split's table lie in that file's mapping (zero-copy), not on its heap: written to ``rank-<rank>.json``."""
        from fusionlab.data.node_cache import buffers_in_mapping
        from fusionlab.train.context import RayWorkerContext

        context = RayWorkerContext(parse_config(args["tree"]))
        report: dict = {"pid": os.getpid()}
        for split, dataset in (("train", context.train_set), ("val", context._val.dataset)):
            table, stat = dataset.table, os.stat(dataset.mapped)
            images = [name for name in [*dataset.manifest.modalities, "label"] if name in table.column_names]
            report[split] = {"file": [stat.st_dev, stat.st_ino],
                             "images_in_mapping": buffers_in_mapping(table.select(images), dataset.mapped)}
        (Path(args["out"]) / f"rank-{context.rank}.json").write_text(json.dumps(report))

    tree = config_tree(small_synthetic, data={"node_cache": str(tmp_path / "node-cache")},
                       resources={"num_workers": 2, "use_gpu": False})
    reports = tmp_path / "reports"
    reports.mkdir()
    TorchTrainer(report_mappings, train_loop_config={"tree": tree, "out": str(reports)},
                 scaling_config=ray.train.ScalingConfig(num_workers=2, use_gpu=False),
                 run_config=ray.train.RunConfig(name="mappings", storage_path=str(tmp_path / "ray"))).fit()
    workers = [json.loads((reports / f"rank-{rank}.json").read_text()) for rank in range(2)]
    assert workers[0]["pid"] != workers[1]["pid"], "two worker processes"
    for split in ("train", "val"):
        assert workers[0][split]["file"] == workers[1][split]["file"], f"{split}: both map the same file"
        assert all(worker[split]["images_in_mapping"] for worker in workers), \
            f"{split}: every image buffer in the file's mapping, none copied onto a worker's heap"
    assert workers[0]["train"]["file"] != workers[0]["val"]["file"], "a copy per split"
