"""A sweep that loses a worker node mid-trial: the trial's Train run restarts from its last checkpoint elsewhere.

A three-node Ray cluster on this machine (``ray.cluster_utils.Cluster``): a head with the ``tune_driver`` resource
and no CPU (the trial drivers and Train controllers live there, never a training worker), and two worker nodes with
CPUs, tagged ``node_a`` / ``node_b``. A background thread waits for a trial's first epoch logged to MLflow (so
checkpointed), finds the node that hosts its Train worker and removes it. No node is added back: the other worker
node's CPUs are enough for the restarted worker and the remaining trials (``Cluster.add_node`` must be called from
the main thread, which runs the sweep). Ray Train's ``FailureConfig(max_failures=resources.max_failures)`` restarts
the worker group from the latest checkpoint; the worker continues the trial's MLflow run, named after the trial id.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

EPOCHS = 4
TRIALS = 2  # the interrupted one and one after it on the node left


def wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


def first_logged_run(uri: str, experiment: str) -> tuple[str, int] | None:
    """A running trial's MLflow run name and its logged epochs, once it has logged one (so has checkpointed it)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    try:
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'") if found else []
        for run in runs:
            if "train/loss" in run.data.metrics:
                return run.info.run_name, len(client.get_metric_history(run.info.run_id, "train/loss"))
    except Exception:  # the SQLite store busy with the trials' writes: ask again
        return None
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


def sweep_tree(data: Path, experiment: str) -> dict:
    return {
        "data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [48, 64]},
        "model": {"name": "cen", "backbone": "resnet_mini"},
        "train": {"epochs": EPOCHS, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3,
                  "checkpoint_every": 1},
        "resources": {"num_workers": 1, "use_gpu": False, "max_failures": 3},
        "tracking": {"experiment": experiment},
        "search": {"space": {"model.params.lambda": {"type": "loguniform", "low": 1e-4, "high": 1e-1}},
                   "num_samples": TRIALS, "seed": 3, "name": experiment, "scheduler": {"type": "none"},
                   "max_concurrent_trials": 1},
    }


@pytest.mark.slow
def test_sweep_survives_losing_a_worker_node(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    import optuna
    import ray
    from mlflow.tracking import MlflowClient
    from ray.cluster_utils import Cluster

    from fusionlab.config import parse_config
    from fusionlab.data.synthetic import write_synthetic
    from fusionlab.tracking import default_tracking_uri
    from fusionlab.tune.sweep import start_sweep

    data = tmp_path / "synthetic"
    write_synthetic(data, train=8, val=4, test=4, size=(48, 64), seed=0)
    workdir = tmp_path / "runs"
    config = parse_config(sweep_tree(data, "nodeloss"), origin="test")

    temp_dir = tempfile.mkdtemp(prefix="rn-", dir="/tmp")  # Ray's socket paths have a length limit
    # Cluster writes its address to $RAY_TMPDIR/ray/ray_current_cluster (default /tmp/ray, which need not exist and
    # is every local Ray's): this cluster's own, under its temp dir.
    (Path(temp_dir) / "ray").mkdir()
    monkeypatch.setenv("RAY_TMPDIR", temp_dir)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "resources": {"tune_driver": 1}, "include_dashboard": False, "temp_dir": temp_dir})
    nodes = {name: cluster.add_node(num_cpus=2, resources={name: 1}) for name in ("node_a", "node_b")}
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)

    seen: dict = {}

    def remove_a_node_mid_trial():
        try:
            logged = wait_for(lambda: first_logged_run(default_tracking_uri(workdir), "nodeloss"), timeout=150)
            if logged is None:
                seen["error"] = "no trial logged an epoch"
                return
            run = workdir / "ray_results" / logged[0]  # the Train run is named as the MLflow run
            hosts = wait_for(lambda: train_worker_hosts(nodes), timeout=10)
            if not hosts or len(hosts) != 1:
                seen["error"] = f"the Train worker of {run.name} is on {hosts}, not one worker node"
                return
            name = hosts.pop()
            node = nodes[name]
            seen.update(run=run.name, node=name, node_id=node.node_id, logged_before=logged[1],
                        checkpoints_before=len(list(run.glob("checkpoint_*"))), at=time.time())
            cluster.remove_node(node, allow_graceful=False)
            seen["removed"] = True
        except Exception as error:  # reported by the test body
            seen["error"] = repr(error)

    watcher = threading.Thread(target=remove_a_node_mid_trial, daemon=True)
    started = time.time()
    try:
        watcher.start()
        results, best = start_sweep(config, workdir)
        watcher.join(timeout=30)
        hosts_after = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    print(f"sweep took {time.time() - started:.0f} s; node loss: {seen}")

    assert "error" not in seen, seen["error"]
    assert seen.get("removed"), seen
    assert seen["node_id"] not in hosts_after, "the node was removed"
    assert 1 <= seen["logged_before"] < EPOCHS, "the node was removed after an epoch, before its trial finished"

    # Every trial finished; none lost, none duplicated.
    assert len(results) == TRIALS and not results.errors, results.errors
    sweep_dir = workdir / "sweeps" / "nodeloss"
    study = optuna.load_study(study_name="nodeloss", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * TRIALS
    client = MlflowClient(default_tracking_uri(workdir))
    experiment = client.get_experiment_by_name("nodeloss")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("fusionlab.kind") == "sweep"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == TRIALS, "one child run per trial"
    assert {c.info.status for c in children} == {"FINISHED"}
    for child in children:
        steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, "train/loss"))
        assert steps == list(range(EPOCHS)), (child.info.run_name, steps)

    # The interrupted trial resumed from its checkpoint: it had logged epochs to MLflow before its node went, yet
    # MLflow (above) and Tune saw each epoch once - a restart from scratch would train and report epoch 0 again.
    interrupted = [r for r in results if seen["run"].endswith(r.metrics["trial_id"])]
    assert len(interrupted) == 1, (seen["run"], [r.metrics.get("trial_id") for r in results])
    epochs = list(interrupted[0].metrics_dataframe["epoch"])
    assert epochs == list(range(EPOCHS)), epochs
    assert seen["checkpoints_before"] >= 1
    assert interrupted[0].metrics["training_iteration"] == EPOCHS
