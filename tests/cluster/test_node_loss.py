"""Losing a node: ``resources.max_failures`` reaches Ray Train's ``FailureConfig``, and the helpers the end-to-end
node-loss test (test_grid_node_loss.py: a grid's cells on a three-node ``ray.cluster_utils.Cluster``, a worker node
removed mid-cell) uses to wait and to find which node hosts a Train worker.
"""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


def train_worker_hosts(nodes: dict) -> set[str]:
    """Names of the nodes running a Ray Train worker: its process is a child of that node's raylet (no dashboard
    needed, unlike ``ray.util.state``)."""
    import psutil

    raylets = {node.all_processes["raylet"][0].process.pid: name for name, node in nodes.items()}
    hosts = set()
    for process in psutil.process_iter(["ppid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if cmdline.startswith("ray::RayTrainWorker") and process.info["ppid"] in raylets:
            hosts.add(raylets[process.info["ppid"]])
    return hosts


def test_run_ray_restarts_lost_workers_from_checkpoints(tmp_path, monkeypatch):
    """``resources.max_failures`` reaches the trainer's ``RunConfig.failure_config`` (no Ray is started)."""
    import ray.train
    import ray.train.torch

    import fusionlab.data.ray_dataset
    from fusionlab.config import parse_config
    from fusionlab.data.synthetic import write_synthetic
    from fusionlab.train import driver

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    data = tmp_path / "synthetic"
    write_synthetic(data, train=8, val=2, test=2, size=(48, 64), seed=0)  # one batch of the default 8
    built = {}

    class FakeDataset:
        def materialize(self):
            return self

    class FakeTrainer:
        def __init__(self, *args, **kwargs):
            built.update(kwargs)

        def fit(self):
            return "fitted"

    monkeypatch.setattr(driver, "ensure_ray", lambda config, address: None)
    monkeypatch.setattr(fusionlab.data.ray_dataset, "ray_split_dataset", lambda *args, **kwargs: FakeDataset())
    monkeypatch.setattr(ray.train.torch, "TorchTrainer", FakeTrainer)
    tree = {"data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [48, 64]},
            "model": {"name": "cen", "backbone": "resnet_mini"}, "resources": {"use_gpu": False}}
    assert driver.run_ray(parse_config(tree, origin="test"), tmp_path / "runs") == "fitted"
    failure = built["run_config"].failure_config
    assert isinstance(failure, ray.train.FailureConfig) and failure.max_failures == 3  # the default
    tree["resources"]["max_failures"] = 0
    driver.run_ray(parse_config(tree, origin="test"), tmp_path / "runs")
    assert built["run_config"].failure_config.max_failures == 0
