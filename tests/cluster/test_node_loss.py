"""Losing a node: ``resources.max_failures`` reaches Ray Train's ``FailureConfig`` (the end-to-end node-loss tests:
test_grid_node_loss.py, test_production_grid.py)."""

from __future__ import annotations


def test_run_ray_restarts_lost_workers_from_checkpoints(tmp_path, monkeypatch, stand_in_trainer):
    """``resources.max_failures`` reaches the trainer's ``RunConfig.failure_config`` (no Ray is started)."""
    import ray.train

    from fusionlab.data.synthetic import write_synthetic
    from fusionlab.train import driver
    from fusionlab.train.prepare import parse_config

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    data = tmp_path / "synthetic"
    write_synthetic(data, train=8, val=2, test=2, size=(48, 64), seed=0)  # one batch of the default 8
    built = stand_in_trainer
    tree = {"data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [48, 64]},
            "model": {"name": "cen", "backbone": "resnet_mini"}, "resources": {"use_gpu": False}}
    assert driver.run_ray(parse_config(tree, origin="test"), tmp_path / "runs") == "fitted"
    failure = built["run_config"].failure_config
    assert isinstance(failure, ray.train.FailureConfig) and failure.max_failures == 3  # the default
    tree["resources"]["max_failures"] = 0
    driver.run_ray(parse_config(tree, origin="test"), tmp_path / "runs")
    assert built["run_config"].failure_config.max_failures == 0
