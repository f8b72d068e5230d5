"""MLflow for sweeps: one parent run per sweep (found again on resume), a summary at the end."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Metric, Param, RunTag

from . import plots, store
from .filters import tag_equals
from .runs import ensure_experiment
from .tags import ERROR_TAG, KIND_TAG, PARENT_RUN_ID_TAG, STOPPED_EARLY_TAG, SWEEP_KEY_TAG


def open_parent_run(uri: str, experiment: str, sweep: str, params: dict[str, Any], kind: str = "sweep",
                    artifact_root: str | Path | None = None, tags: dict[str, str] | None = None) -> str:
    """The parent run of a sweep (or of a grid, ``kind="grid"``), found again by its key on a second call. ``params``
    are logged when it is created; ``tags`` (this launch's, e.g. a grid's selection) are set at every call."""
    client = store.client(uri)
    experiment_id = ensure_experiment(uri, experiment, artifact_root)
    found = client.search_runs([experiment_id], filter_string=tag_equals(SWEEP_KEY_TAG, sweep), max_results=1)
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        set_tags(uri, found[0].info.run_id, tags or {})
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=sweep,
                            tags={SWEEP_KEY_TAG: sweep, KIND_TAG: kind, **(tags or {})})
    values = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for start in range(0, len(values), 100):
        client.log_batch(run.info.run_id, params=values[start:start + 100])
    return run.info.run_id


def close_parent_run(uri: str, parent_run_id: str, status: str = "FINISHED", tags: dict[str, str] | None = None
                     ) -> None:
    set_tags(uri, parent_run_id, tags or {})
    store.client(uri).set_terminated(parent_run_id, status=status)


def set_tags(uri: str, run_id: str, tags: dict[str, str]) -> None:
    if tags:
        store.client(uri).log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])


def child_runs(uri: str, parent_run_id: str) -> list:
    client = store.client(uri)
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    return client.search_runs([experiment_id], filter_string=tag_equals(PARENT_RUN_ID_TAG, parent_run_id))


def log_sweep_summary(uri: str, parent_run_id: str, trials: pd.DataFrame, space: dict[str, str], metric: str,
                      importances: dict[str, float] | None, best: dict[str, Any],
                      stopped: set[str] | frozenset[str] = frozenset()) -> None:
    """``trials``: one row per trial with the searched keys and ``metric``; ``space``: key -> distribution type;
    ``stopped``: the run names of trials the scheduler stopped (Tune ended them without an error)."""
    client = store.client(uri)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        trials.to_csv(tmp_path / "trials.csv", index=False)
        client.log_artifact(parent_run_id, str(tmp_path / "trials.csv"))
        finished = trials.dropna(subset=[metric])
        for key, kind in space.items():
            if kind == "choice" or key not in finished:
                continue
            figure = plots.parameter_scatter(finished[key].astype(float).tolist(), finished[metric].tolist(), key,
                                             metric, kind == "loguniform", tmp_path / f"{key}_vs_metric.png")
            client.log_artifact(parent_run_id, str(figure), artifact_path="plots")
        if importances:
            (tmp_path / "param_importances.json").write_text(json.dumps(importances, indent=2))
            client.log_artifact(parent_run_id, str(tmp_path / "param_importances.json"))
            figure = plots.importance_bar(importances, tmp_path / "param_importances.png")
            client.log_artifact(parent_run_id, str(figure), artifact_path="plots")
        (tmp_path / "best_config.json").write_text(json.dumps(best, indent=2, default=str))
        client.log_artifact(parent_run_id, str(tmp_path / "best_config.json"))
    for run in child_runs(uri, parent_run_id):
        # Stopped early by the scheduler: left RUNNING, or ended FAILED by the trial driver when its Train
        # controller died under it before Tune ended the trial (ActorDiedError) - a stop, not a failure.
        if run.info.status == "RUNNING" or (run.info.status == "FAILED" and run.info.run_name in stopped):
            client.set_tag(run.info.run_id, STOPPED_EARLY_TAG, "true")
            if ERROR_TAG in run.data.tags:
                client.delete_tag(run.info.run_id, ERROR_TAG)
            client.set_terminated(run.info.run_id, status="KILLED")
    if len(finished):
        best_value = finished[metric].max() if best.get("mode", "max") == "max" else finished[metric].min()
        client.log_batch(parent_run_id, metrics=[Metric(f"best/{metric}", float(best_value), 0, 0),
                                                 Metric("trials", float(len(trials)), 0, 0)])
    client.set_terminated(parent_run_id)
