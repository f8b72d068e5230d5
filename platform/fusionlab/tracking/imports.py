"""An imported model (``fusionlab import-checkpoint``) as an MLflow run that evaluate, predict, report and promote
treat like a finished training run: the same tags, the model logged the same way, plus where it came from."""

from __future__ import annotations

import os
from typing import Any

from mlflow.entities import Param
from torch import nn

from fusionlab.data import Manifest
from fusionlab.models import FusionModel

from . import store
from .runs import MODEL_NAME, RunTracker, ensure_experiment, run_tags
from .tags import (
    IMPORT_SHA256_TAG,
    IMPORT_SOURCE_TAG,
    MANIFEST_TAG,
    MODEL_TAG,
    ORIGIN_TAG,
    RECIPE_TAG,
    RUN_NAME_TAG,
    SELECTION_TAG,
)


def log_imported_model(uri: str, experiment: str, run_name: str, model: FusionModel, manifest: Manifest, *,
                       predictor: nn.Module, params: dict[str, Any], source: str, sha256: str, recipe: str,
                       selection: str, metrics: dict[str, float] | None = None, dataset_known: bool = True,
                       artifact_root: str | os.PathLike | None = None) -> str:
    """Create a finished run holding ``model`` as ``predictor`` serves it (``inference.servable`` for ``manifest``'s
    inputs and classes) and return its id.

    ``dataset_known=False``: ``manifest`` only describes the inputs (no dataset was given), so the run records no
    dataset version and is never compared with runs on a real one. ``artifact_root``: where a new experiment keeps
    its artifacts (``WORKDIR/mlartifacts``, as training's; without it MLflow's default is ``./mlruns`` of the
    current directory)."""
    client = store.client(uri)
    experiment_id = ensure_experiment(uri, experiment, artifact_root)
    tags = {**run_tags(manifest, model), RUN_NAME_TAG: run_name, MODEL_TAG: str(params["model.name"]),
            ORIGIN_TAG: "import", IMPORT_SOURCE_TAG: source, IMPORT_SHA256_TAG: sha256, RECIPE_TAG: recipe,
            SELECTION_TAG: selection}
    if not dataset_known:
        tags.pop(MANIFEST_TAG)
    run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    values = [Param(key, str(value)[:6000]) for key, value in params.items()]
    for start in range(0, len(values), 100):
        client.log_batch(run_id, params=values[start:start + 100])
    tracker = RunTracker(client, run_id, set())
    try:
        if metrics:
            tracker.log_metrics(metrics, step=0)
        tracker.log_model(predictor)
    except BaseException:
        tracker.close("FAILED")
        raise
    tracker.close()
    return run_id


def model_uri(run_id: str) -> str:
    return f"runs:/{run_id}/{MODEL_NAME}"
