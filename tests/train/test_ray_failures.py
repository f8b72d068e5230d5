"""On Ray Train, the user's own error fails the run at once (a lost worker is still retried: tests/cluster/
test_node_loss.py), and the run ends FAILED with it (issue 14, items 6 and 7).

No Ray here: the trainer is a fake whose worker opens the run's MLflow run as the loop does and then fails as Ray
Train 2.60 reports a worker's error. On a real Ray, a diverging cell of a grid (each cell a ``run_ray`` Train run with
the default ``max_failures``) ends FAILED after one start with its own error: tests/tune/test_grid_run.py; that Ray
Train raises such an error instead of retrying it is tests/train/test_failures.py.
"""

import pytest
import ray.train.torch
from mlflow.tracking import MlflowClient
from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
from ray.train.v2._internal.execution.failure_handling import FailureDecision
from ray.train.v2.api import data_parallel_trainer
from ray.train.v2.api.exceptions import WorkerGroupError
from train_configs import config_tree

from fusionlab.errors import TrainingDiverged
from fusionlab.tracking import RunTracker, default_tracking_uri
from fusionlab.tracking.lifecycle import ERROR_TAG, STARTS_TAG
from fusionlab.train import driver
from fusionlab.train.failures import install_failure_policy
from fusionlab.train.prepare import parse_config


def test_a_diverged_worker_fails_the_run_at_once_with_its_own_error(small_synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    config = parse_config(config_tree(
        small_synthetic, train={"epochs": 1, "optimizer": "sgd", "lr_encoder": 1e6, "lr_decoder": 1e6},
        resources={"num_workers": 1, "max_failures": 3, "use_gpu": False}, tracking={"experiment": "ray-failures"}))
    diverged = TrainingDiverged("training loss was not finite at epoch 0 (step 1: nan)")

    class DivergingTrainer:
        def __init__(self, *args, train_loop_config, **kwargs):
            self.payload = train_loop_config

        def fit(self):
            payload = self.payload  # what the rank-0 worker does first (train/loop.py), then its epoch diverges
            RunTracker.open(payload["tracking_uri"], config, payload.get("parent_run_id"), payload.get("tags"),
                            payload.get("launch"))
            raise WorkerGroupError("rank 0 failed", {0: UserExceptionWithTraceback(diverged, "Traceback ...")})

    monkeypatch.setattr(driver, "ensure_ray", lambda config, address: None)
    monkeypatch.setattr(ray.train.torch, "TorchTrainer", DivergingTrainer)
    with pytest.raises(TrainingDiverged, match="not finite") as raised:  # the worker's own error, not Ray's wrapper
        driver.run_ray(config, tmp_path)
    assert raised.value is diverged
    client = MlflowClient(default_tracking_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("ray-failures").experiment_id])
    assert run.data.tags[STARTS_TAG] == "1"
    assert run.info.status == "FAILED"
    assert run.data.tags[ERROR_TAG].startswith("TrainingDiverged:")


def test_ray_train_is_told_to_raise_a_divergence_not_retry_it():
    assert install_failure_policy()
    policy = data_parallel_trainer.create_failure_policy(ray.train.FailureConfig(max_failures=3))
    error = WorkerGroupError("rank 0 failed", {0: UserExceptionWithTraceback(TrainingDiverged("nan"), "Traceback")})
    assert policy.make_decision(error) == FailureDecision.RAISE  # max_failures 3, but no retry: it would diverge again
