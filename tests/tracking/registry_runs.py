"""A small tracking store of training runs for the registry tests, written to MLflow as training writes them but
without training (tiny data; each model is the untrained network of its config and seed).

Experiments:
- ``reg-a1``: run ``a1`` on dataset A;
- ``reg-a2``: a sweep parent (``val/miou`` 0.99: it must never be a candidate) with its child ``a2`` on dataset A, a
  FAILED training run and a FINISHED one without ``val/miou`` (neither may be a candidate either);
- ``reg-b``: run ``b`` on dataset B, the same generator with another seed: same dataset name, another manifest;
- ``reg-other``: a finished training run on another dataset (tags only, no model).

Each run is opened by the tracker training uses (``RunTracker.open``: params, run key, the data and model tags of
``run_tags``), logs one epoch, the untrained model's real ``test/miou`` (``fusionlab evaluate`` must show it) and
the model as ``fusionlab.tracking.runs.servable`` serves it; ``val/miou`` is then set at a later step (the final
value of a metric is the one at its highest step): 0.30, 0.50, 0.60. ``a2`` also gets ``custom/score`` (a metric
the other runs lack). The training loop itself is proven end to end elsewhere (tests/train/test_train_ray.py,
tests/train/test_cli_train.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

from fusionlab.data import Manifest
from fusionlab.data.synthetic import write_synthetic
from fusionlab.inference.servable import servable
from fusionlab.tracking import RunTracker, default_tracking_uri
from fusionlab.tracking.runs import KIND_TAG, run_tags
from fusionlab.tracking.sweeps import close_parent_run, open_parent_run
from fusionlab.train.evaluate import evaluate
from fusionlab.train.prepare import parse_config
from fusionlab.train.segmentation_task import build_model

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

FINAL_STEP = 1000  # after every epoch's step: the overwritten value becomes the final one
VAL_MIOU = {"a1": 0.30, "a2": 0.50, "b": 0.60}


@dataclass
class Store:
    workdir: Path
    uri: str
    data_a: Path
    data_b: Path
    runs: dict[str, str]  # run name -> run id
    parent: str  # the sweep parent run's id

    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)


def _logged_run(data: Path, experiment: str, name: str, workdir: Path, parent: str | None = None) -> str:
    """A FINISHED training run as the training loop leaves it (one epoch logged, final metrics, the model)."""
    config = parse_config({
        "data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [48, 64]},
        "model": {"name": "cen", "backbone": "resnet_mini"},
        "train": {"epochs": 1, "batch_size": 4},
        "resources": {"num_workers": 1},
        "tracking": {"experiment": experiment, "run_name": name},
    })
    manifest = Manifest.load(data)
    torch.manual_seed(config.train.seed)
    model = build_model(config, manifest)
    tracker = RunTracker.open(default_tracking_uri(workdir), config, parent, run_tags(manifest, model))
    tracker.log_epoch({"epoch": 0, "train/loss": 1.0, "val/miou": 0.1})
    predictor = servable(model, manifest).eval()
    test = evaluate(predictor, data, "test")
    tracker.log_metrics({f"test/{key}": value for key, value in test.items()}, step=1)
    tracker.log_model(predictor)
    tracker.mark_final_logged()
    tracker.close()
    return tracker.run_id


def _bare_run(client: MlflowClient, experiment: str, name: str, tags: dict[str, str], metrics: dict[str, float],
              status: str) -> str:
    experiment_id = (client.get_experiment_by_name(experiment) or client.get_experiment(
        client.create_experiment(experiment))).experiment_id
    run = client.create_run(experiment_id, run_name=name, tags={KIND_TAG: "train", **tags})
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value, step=0)
    client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


def build_store(root: Path) -> Store:
    data_a, data_b, workdir = root / "data-a", root / "data-b", root / "runs"
    write_synthetic(data_a, train=8, val=4, test=4, size=(48, 64), seed=0)
    write_synthetic(data_b, train=8, val=4, test=4, size=(48, 64), seed=1)
    uri = default_tracking_uri(workdir)
    runs = {"a1": _logged_run(data_a, "reg-a1", "a1", workdir)}
    parent = open_parent_run(uri, "reg-a2", "sweep-a2", {"search.num_samples": 1}, kind="sweep",
                             artifact_root=workdir / "mlartifacts")
    runs["a2"] = _logged_run(data_a, "reg-a2", "a2", workdir, parent=parent)
    runs["b"] = _logged_run(data_b, "reg-b", "b", workdir)

    client = MlflowClient(uri)
    for name, value in VAL_MIOU.items():
        client.log_metric(runs[name], "val/miou", value, step=FINAL_STEP)
    client.log_metric(runs["a2"], "custom/score", 1.0, step=0)
    client.log_metric(parent, "val/miou", 0.99, step=0)
    close_parent_run(uri, parent)
    dataset_tags = {key: value for key, value in client.get_run(runs["a1"]).data.tags.items()
                    if key in ("fusionlab.dataset", "fusionlab.task", "fusionlab.manifest_sha256")}
    runs["failed"] = _bare_run(client, "reg-a2", "failed", dataset_tags, {"val/miou": 0.95}, "FAILED")
    runs["no-metric"] = _bare_run(client, "reg-a2", "no-metric", dataset_tags, {"train/loss": 1.0}, "FINISHED")
    runs["other"] = _bare_run(client, "reg-other", "other", {**dataset_tags, "fusionlab.dataset": "other-rgbd"},
                              {"val/miou": 0.40}, "FINISHED")
    return Store(workdir, uri, data_a, data_b, runs, parent)
