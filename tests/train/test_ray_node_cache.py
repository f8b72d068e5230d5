"""A Ray run's workers on one node share one copy of each split they read (data/node_cache.py), not one each."""

import pytest
from train_configs import config_tree

from fusionlab.config import parse_config
from fusionlab.data.node_cache import cache_name
from fusionlab.data.reader import DatasetReader
from fusionlab.train.driver import run_ray
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
