"""MLflow runs for training: create or resume a run by its stable key, log params/metrics/artifacts/model.

The only module (with its package) that imports mlflow.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from torch import nn

from fusionlab.config import Config
from fusionlab.config.identity import as_param
from fusionlab.config.recipes import recipe_label
from fusionlab.data import Manifest
from fusionlab.models import FusionModel
from fusionlab.models.flops import model_sample_flops
from fusionlab.models.predictor import SegmentationPredictor, TranslationPredictor

from . import lifecycle, model_flavor, store
from .tags import (
    DATASET_TAG,
    EXPERIMENT_KIND_TAG,
    FLOPS_TAG,
    KIND_TAG,
    MANIFEST_TAG,
    MODALITIES_TAG,
    MODEL_TAG,
    PARAMETERS_TAG,
    PARENT_RUN_ID_TAG,
    PRETRAINED_RELEASE_TAG,
    PRETRAINED_SHA256_TAG,
    PREVIOUS_ERROR_TAG,
    RECIPE_TAG,
    RUN_KEY_TAG,
    RUN_NAME_TAG,
    SELECTION_TAG,
    TASK_TAG,
)

__all__ = ["KIND_TAG", "PRETRAINED_RELEASE_TAG", "PRETRAINED_SHA256_TAG", "RECIPE_TAG", "SELECTION_TAG", "RunTracker",
           "default_tracking_uri", "ensure_experiment", "load_model", "run_tags"]
MODEL_NAME = "model"
# The MLflow UI opens an experiment of this kind on its runs table (not the GenAI traces overview).
EXPERIMENT_TAGS = {EXPERIMENT_KIND_TAG: "custom_model_development"}
SERVER_SCHEMES = ("http", "https", "databricks")  # a tracking server: it owns where artifacts go
ARTIFACT_ROOT_ENV = "FUSIONLAB_ARTIFACT_ROOT"


def run_tags(manifest: Manifest, model: FusionModel) -> dict[str, str]:
    """What every training run records about its data and model (read by ``promote`` and ``report``), and the
    ImageNet file its encoder started from (``model.pretrained_file``, set when it was loaded)."""
    tags = {
        KIND_TAG: "train",
        DATASET_TAG: manifest.name,
        TASK_TAG: manifest.task,
        MANIFEST_TAG: manifest.digest,
        PARAMETERS_TAG: str(sum(p.numel() for p in model.parameters())),
        MODALITIES_TAG: ",".join(model.modalities),
    }
    if manifest.image_size is not None:
        flops = model_sample_flops(model, manifest.image_size)
        if flops is not None:
            tags[FLOPS_TAG] = str(round(flops))
    pretrained = model.pretrained_file
    if pretrained is not None:
        tags[PRETRAINED_SHA256_TAG] = pretrained.sha256
        tags[PRETRAINED_RELEASE_TAG] = f"{pretrained.arch} {pretrained.release}" if pretrained.release else "unknown"
    return tags


def default_tracking_uri(workdir: str | os.PathLike) -> str:
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def ensure_experiment(uri: str, name: str, artifact_root: str | os.PathLike | None = None) -> str:
    """The experiment's id, creating it if needed, with its artifacts where ``artifact_location`` says."""
    client = store.client(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(uri, artifact_root),
                                    tags=EXPERIMENT_TAGS)


def artifact_location(uri: str, local_root: str | os.PathLike | None) -> str | None:
    """Where a new experiment keeps its models and plots. A tracking server's own artifact store (None: the server's
    default, ``mlflow-artifacts:`` proxied to its ``--artifacts-destination``, an S3 bucket on a cluster), which every
    node reaches through the server; for a database store, ``FUSIONLAB_ARTIFACT_ROOT`` (an ``s3://`` prefix every
    node can write) if set, else ``local_root`` (the workdir's ``mlartifacts``)."""
    if uri.split("://", 1)[0].lower() in SERVER_SCHEMES:
        return None
    root = os.environ.get(ARTIFACT_ROOT_ENV) or local_root
    if root is None or "://" in str(root):
        return None if root is None else str(root).rstrip("/")
    return Path(root).resolve().as_uri()


class RunTracker:
    """One MLflow run per training run; a resumed training continues the same run and never logs a step twice."""

    def __init__(self, client: MlflowClient, run_id: str, logged_epochs: set[int], final_logged: bool = False):
        self.client = client
        self.run_id = run_id
        self.logged_epochs = logged_epochs
        self.final_logged = final_logged  # the selected model, its test scores and plots: logged once

    @classmethod
    def open(cls, uri: str, config: Config, parent_run_id: str | None = None,
             tags: dict[str, str] | None = None, launch: str | None = None) -> RunTracker:
        """Find the run by its key (resume) or create it; ``tags`` are set either way. ``launch`` (the driver's
        launch id) lets the driver end the run honestly if this launch fails (``lifecycle.mark_launch_ended``)."""
        client = store.client(uri)
        experiment_id = ensure_experiment(uri, config.tracking.experiment)
        key = config.run_name()
        tags = {**(tags or {}), RECIPE_TAG: recipe_label(config.flat())}
        if launch:
            tags[lifecycle.LAUNCH_TAG] = launch
        found = lifecycle.find_run(client, experiment_id, key)
        if found:
            run_id = found.info.run_id
            client.update_run(run_id, status="RUNNING")
            logged = {m.step for m in client.get_metric_history(run_id, "train/loss")}
            previous = found.data.tags
            tags[lifecycle.STARTS_TAG] = str(int(previous.get(lifecycle.STARTS_TAG, "1")) + 1)
            if lifecycle.ERROR_TAG in previous:  # running again: the error is history now
                tags[PREVIOUS_ERROR_TAG] = previous[lifecycle.ERROR_TAG]
                client.delete_tag(run_id, lifecycle.ERROR_TAG)
            client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            return cls(client, run_id, logged, final_logged=previous.get(lifecycle.FINAL_TAG) == "logged")
        all_tags = {**tags, RUN_KEY_TAG: key, RUN_NAME_TAG: key, MODEL_TAG: config.model.name,
                    lifecycle.STARTS_TAG: "1"}
        if parent_run_id:
            all_tags[PARENT_RUN_ID_TAG] = parent_run_id
        run = client.create_run(experiment_id, run_name=key, tags=all_tags)
        params = [Param(k, as_param(v)) for k, v in config.flat().items()]
        for start in range(0, len(params), 100):
            client.log_batch(run.info.run_id, params=params[start:start + 100])
        return cls(client, run.info.run_id, set())

    def log_epoch(self, metrics: dict[str, Any]) -> None:
        epoch = int(metrics["epoch"])
        if epoch in self.logged_epochs:
            return
        now = int(time.time() * 1000)
        values = [Metric(key, float(value), now, epoch) for key, value in metrics.items()
                  if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(float(value))]
        for start in range(0, len(values), 500):
            self.client.log_batch(self.run_id, metrics=values[start:start + 500])
        self.logged_epochs.add(epoch)

    def catch_up(self, history: list[dict[str, Any]]) -> None:
        for metrics in history:
            self.log_epoch(metrics)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_final(self, figures: Mapping[str, Callable[[Path], Path | None]], predictor: nn.Module) -> None:
        """The selected model's plots (``figures``: file name -> what draws it, from the run's task) under
        ``plots/``, then the model itself."""
        for name, draw in figures.items():
            self.log_figure(draw, f"plots/{name}")
        self.log_model(predictor)

    def log_figure(self, draw: Callable[[Path], Path | None], artifact_file: str) -> None:
        """``draw(path)``'s figure at ``artifact_file`` (e.g. ``images/epoch_0003.png``); nothing when it draws
        nothing (no examples, a model without fusion points)."""
        with tempfile.TemporaryDirectory() as tmp:
            figure = draw(Path(tmp) / Path(artifact_file).name)
            if figure is not None:
                self.client.log_artifact(self.run_id, str(figure), artifact_path=str(Path(artifact_file).parent))

    def log_model(self, predictor: nn.Module) -> None:
        """The run's model, as ``predictor`` serves it (``inference.servable``): weights plus the
        spec that rebuilds it (tracking/model_flavor.py)."""
        model_flavor.log_model(self.client.tracking_uri, self.run_id, MODEL_NAME, predictor.cpu().eval())

    def mark_final_logged(self) -> None:
        self.client.set_tag(self.run_id, lifecycle.FINAL_TAG, "logged")
        self.final_logged = True

    def close(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


def load_model(model_uri: str, tracking_uri: str | None = None) -> SegmentationPredictor | TranslationPredictor:
    """The predictor logged at ``model_uri``, rebuilt from its weights and spec; anything else (a pickled model) is
    refused with a FusionlabError, and nothing in it is unpickled."""
    return model_flavor.load_model(model_uri, tracking_uri)
