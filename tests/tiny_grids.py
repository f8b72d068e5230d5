"""Tiny grid files for the grid-runner tests, and reading a grid's MLflow runs back."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from mlflow.tracking import MlflowClient

from fusionlab.cli import main
from fusionlab.tracking import default_tracking_uri

BASE = {
    "data": {"path": None, "modalities": ["rgb", "depth"], "crop": [48, 64]},
    "model": {"backbone": "resnet_mini"},
    "train": {"epochs": 2, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3},
    # explicit, as in the paper grids: a cluster reached by address refuses "auto" (train/cluster.py)
    "resources": {"num_workers": 1, "use_gpu": False},
}
UNIMODAL_RGB = {"model.name": "unimodal", "model.params.modality": "rgb", "data.modalities": ["rgb"]}
# SGD at this rate overflows the weights in its first step: the second step's loss is not finite, so the epoch
# raises TrainingDiverged, an error that would only recur (not retried: train/failures.py).
DIVERGES = {"model.name": "unimodal", "model.params.modality": "depth", "data.modalities": ["depth"],
            "train.optimizer": "sgd", "train.lr_encoder": 1e30, "train.lr_decoder": 1e30}


def fusionlab(capsys, *argv) -> tuple[int, str]:
    """``fusionlab ARGV`` in this process: its exit code and its output as one line of words."""
    capsys.readouterr()
    rc = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    text = re.sub("[\u2500-\u257f]", " ", captured.out + captured.err)  # the table's box drawing
    return rc, " ".join(text.split())  # rich wraps long lines


def write_grid(path: Path, name: str, data: Path, cells: list[tuple[str, dict[str, Any]]],
               grid: dict[str, Any] | None = None, base: dict[str, Any] | None = None) -> Path:
    tree = {"grid": {"name": name, "estimate": {"device": "cpu", "kind": "cpu", "peak_tflops": 0.3, "mfu": 0.3},
                     **(grid or {})},
            "base": {**BASE, "data": {**BASE["data"], "path": str(data)}, **(base or {})},
            "cells": [{"label": label, "set": values} for label, values in cells]}
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def parent_and_children(workdir: Path, experiment: str, kind: str):
    """``(client, parent, children)``: the one parent run of ``kind`` (grid, sweep) in ``experiment`` and its
    child runs."""
    client = MlflowClient(default_tracking_uri(workdir))
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [run for run in runs if run.data.tags.get("fusionlab.kind") == kind]
    assert len(parents) == 1, f"one parent run per {kind}, found {len(parents)}"
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return client, parents[0], children


def grid_runs(workdir: Path, experiment: str):
    """``(client, parent, {run name: child run})`` of the one grid parent run in ``experiment``."""
    client, parent, children = parent_and_children(workdir, experiment, "grid")
    names = [run.info.run_name for run in children]
    assert len(names) == len(set(names)), f"one child run per cell, found {sorted(names)}"
    return client, parent, {run.info.run_name: run for run in children}


def logged_epochs(client: MlflowClient, run_id: str) -> list[int]:
    return sorted(metric.step for metric in client.get_metric_history(run_id, "train/loss"))
