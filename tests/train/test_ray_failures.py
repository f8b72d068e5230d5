"""On Ray Train, the user's own error fails the run at once (a lost worker is still retried: tests/cluster/
test_node_loss.py), and the run ends FAILED with it (issue 14, items 6 and 7)."""

import pytest
from mlflow.tracking import MlflowClient
from train_configs import config_tree

from fusionlab.config import parse_config
from fusionlab.errors import TrainingDiverged
from fusionlab.tracking import default_tracking_uri
from fusionlab.tracking.lifecycle import ERROR_TAG, STARTS_TAG
from fusionlab.train.driver import run_ray

pytestmark = pytest.mark.slow


def test_a_diverged_run_is_not_retried_and_ends_failed(small_synthetic, tmp_path, ray_local):
    config = parse_config(config_tree(
        small_synthetic, train={"epochs": 1, "optimizer": "sgd", "lr_encoder": 1e6, "lr_decoder": 1e6},
        resources={"num_workers": 1, "max_failures": 3}, tracking={"experiment": "ray-failures"}))
    with pytest.raises(TrainingDiverged, match="not finite"):  # the worker's own error, not Ray's wrapper
        run_ray(config, tmp_path)
    client = MlflowClient(default_tracking_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("ray-failures").experiment_id])
    assert run.data.tags[STARTS_TAG] == "1"  # max_failures 3, but no retry: it would diverge again
    assert run.info.status == "FAILED"
    assert run.data.tags[ERROR_TAG].startswith("TrainingDiverged:")
