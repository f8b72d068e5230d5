"""The headline job end to end on the production topology: `fusionlab grid` from a project directory (not the
repository), against a three-node Ray cluster shaped like cluster/aws-gpu.yaml, tracking in PostgreSQL with the
password only in the nodes' environment (MLFLOW_TRACKING_URI, as the YAML exports it), models in the S3 bucket
(FUSIONLAB_ARTIFACT_ROOT), checkpoints in the bucket (resources.storage_path), a real MLflow server on the same
database and bucket for the report and the promotion. A worker node is removed mid-cell.

The cluster: a head with CPUs and the ``tune_driver`` resource but no training slot (as the YAML's head has no GPU),
two worker nodes with one ``slot`` each (the GPU's stand-in). Every Ray node inherits this process's environment, as a
cluster's nodes source ~/fusionlab.env.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from fusionlab.cli import main
from imagenet_files import torchvision_resnet_state
from loopback_cluster import loopback_cluster, remove_a_worker_node_when, running_cell_past_an_epoch

pytestmark = [pytest.mark.slow, pytest.mark.ray_experiment]

EPOCHS = 3
GRID = "production-grid"


def write_project(project: Path, data: Path) -> Path:
    """A user's project: the grid file beside the weights it names by a relative path."""
    weights = project / "weights" / "mini.pth"
    weights.parent.mkdir(parents=True)
    torch.save(torchvision_resnet_state((2, 2, 2, 2), width=16), weights)  # resnet_mini in torchvision's layout
    tree = {
        "grid": {"name": GRID, "estimate": {"device": "cpu", "kind": "cpu", "peak_tflops": 0.3, "mfu": 0.3}},
        "base": {
            "data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [48, 64]},
            "model": {"backbone": "resnet_mini", "pretrained": "weights/mini.pth", "pretrained_version": "any"},
            "train": {"epochs": EPOCHS, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3,
                      "lr_decoder": 1e-3},
            "resources": {"num_workers": 1, "cpus_per_worker": 1, "worker_resources": {"slot": 1},
                          "use_gpu": False, "storage_path": "s3://fusionlab/ray_results",
                          "checkpoint_upload": "async"},
        },
        "cells": [{"label": "RGB", "set": {"model.name": "unimodal", "model.params.modality": "rgb",
                                           "data.modalities": ["rgb"]}},
                  {"label": "CEN", "set": {"model.name": "cen"}}],
    }
    path = project / "grid.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def files_holding(secret: bytes, root: Path) -> list[str]:
    return [str(path) for path in root.rglob("*") if path.is_file() and not path.is_symlink()
            and secret in path.read_bytes()]


def test_a_grid_on_the_production_topology(tmp_path, monkeypatch, capfd, no_ray_in_process, production_postgres,
                                           production_s3_env, production_mlflow):
    from mlflow.tracking import MlflowClient

    from fusionlab.data.synthetic import write_synthetic

    s3, postgres, server = production_s3_env, production_postgres, production_mlflow
    password = postgres.password
    database = postgres.uri.replace(f"{postgres.user}@", f"{postgres.user}:{password}@")
    for name, value in {"MLFLOW_TRACKING_URI": database, "FUSIONLAB_ARTIFACT_ROOT": f"s3://{s3.bucket}/mlartifacts",
                        "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}.items():
        monkeypatch.setenv(name, value)
    data = tmp_path / "data"
    write_synthetic(data, train=8, val=4, test=4, size=(48, 64), seed=0)
    project = tmp_path / "project"
    write_project(project, data)
    monkeypatch.chdir(project)  # not the repository: the grid names its weights relative to here
    workdir = tmp_path / "runs"

    seen: dict = {}
    with loopback_cluster() as (cluster, nodes, temp_dir):
        watcher = remove_a_worker_node_when(lambda: running_cell_past_an_epoch(database, GRID),
                                            cluster, nodes, seen)
        rc = main(["--workdir", str(workdir), "grid", "grid.yaml"])  # the store: MLFLOW_TRACKING_URI
        watcher.join(timeout=30)
        ray_logs = [path for path in Path(temp_dir).rglob("*") if path.is_file() and not path.is_symlink()
                    and password.encode() in path.read_bytes()]
    output = capfd.readouterr()
    assert "error" not in seen, seen["error"]
    assert seen.get("removed"), seen
    assert rc == 0, output.out[-4000:] + output.err[-4000:]

    # Every cell finished, each epoch logged once, read back through the MLflow server.
    client = MlflowClient(server.url)
    experiment = client.get_experiment_by_name(GRID)
    runs = client.search_runs([experiment.experiment_id])
    cells = {run.info.run_name: run for run in runs if "mlflow.parentRunId" in run.data.tags}
    assert sorted(cells) == ["cen-seed0", "rgb-seed0"]
    for name, run in cells.items():
        assert run.info.status == "FINISHED" and "test/miou" in run.data.metrics, name
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
        assert steps == list(range(EPOCHS)), f"{name}: each epoch logged once"
        assert run.data.params["model.pretrained"] == str(project / "weights" / "mini.pth")
        assert run.data.tags["fusionlab.pretrained.sha256"]
    assert [name for name, run in cells.items() if int(run.data.tags["fusionlab.starts"]) > 1], \
        "the removed node hosted a cell's worker, which started again on the other node"

    # Models and checkpoints in the bucket, none on the driver's disk.
    keys = s3.keys()
    for name, run in cells.items():
        assert run.info.artifact_uri.startswith(f"s3://{s3.bucket}/mlartifacts/"), run.info.artifact_uri
        assert [key for key in keys if key.startswith(f"ray_results/{name}/epoch_")
                and key.endswith("/checkpoint.pt")], f"{name}: no checkpoint in the bucket"
    models = [key for key in keys if key.startswith("mlartifacts/") and key.endswith("/weights.pt")]
    assert len(models) >= len(cells), keys
    assert not list(workdir.rglob("checkpoint.pt")), "checkpoints written to the driver's disk"

    # The password: in no param, tag, artifact, checkpoint, trial state, log line or printed line.
    secret = password.encode()
    recorded = [(run.info.run_name, key) for run in runs
                for key, value in {**run.data.params, **run.data.tags}.items() if password in value]
    assert recorded == []
    in_bucket = [key for key in keys
                 if secret in s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read()]
    assert in_bucket == []
    assert files_holding(secret, workdir) == [], "in the workdir (Tune's state, the grid's launches)"
    assert ray_logs == [], "in Ray's logs"
    assert password not in output.out + output.err
    assert re.search(rf"postgresql\+psycopg2://{postgres.user}:\*\*\*@", runs[0].data.params["tracking.uri"])

    # The report and the promotion, against the server.
    assert main(["--workdir", str(workdir), "--tracking-uri", server.url, "report", "--experiment", GRID,
                 "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "report.md").read_text()
    assert "CEN" in table and "RGB" in table
    assert main(["--tracking-uri", server.url, "promote", "--experiment", GRID, "--alias", "champion"]) == 0
    champions = [client.get_model_version_by_alias(model.name, "champion")
                 for model in client.search_registered_models()]
    assert [version.run_id for version in champions if version.run_id in
            {run.info.run_id for run in cells.values()}], "the champion is one of the grid's cells"
