"""A training run's life in MLflow: found again by its key, resumed only with the settings it was trained with (or
changes that are safe, recorded), and ended in an honest state: FINISHED with its model, FAILED with the error,
KILLED when interrupted."""

from __future__ import annotations

import json
import tempfile
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlflow.entities import Run, RunTag
from mlflow.tracking import MlflowClient

# Defined in tags.py; re-exported (__all__) for the modules and tests that import them from here.
from . import store
from .filters import tag_equals
from .tags import (
    CHANGED_PREFIX,
    ERROR_TAG,
    FINAL_TAG,
    LAUNCH_TAG,
    MANIFEST_TAG,
    OVERRIDES_TAG,
    RUN_KEY_TAG,
    STARTS_TAG,
)

__all__ = ["ERROR_ARTIFACT", "ERROR_TAG", "FINAL_TAG", "LAUNCH_TAG", "RUN_KEY_TAG", "STARTS_TAG", "check_resume",
           "effective_params", "find_run", "mark_ended", "mark_launch_ended", "record_changes"]

TAG_LIMIT = 5000
ERROR_ARTIFACT = "error.txt"


def find_run(client: MlflowClient, experiment_id: str, key: str) -> Run | None:
    found = client.search_runs([experiment_id], filter_string=tag_equals(RUN_KEY_TAG, key),
                               order_by=["attributes.start_time DESC"], max_results=1)
    return found[0] if found else None


def effective_params(run: Run) -> dict[str, str]:
    """The run's params with the safe changes made on resume applied (MLflow params cannot be logged twice)."""
    params = dict(run.data.params)
    overrides = run.data.tags.get(OVERRIDES_TAG)
    if overrides:
        params.update(json.loads(overrides))
    return params


def record_changes(client: MlflowClient, run: Run, changes: Iterable[Any], epoch: int | None) -> None:
    """Tag each safe change (``config.identity.Change``) on the run, and fold it into its param overrides."""
    changes = list(changes)
    if not changes:
        return
    where = "on resume" if epoch is None else f"on resume after epoch {epoch}"
    overrides = json.loads(run.data.tags.get(OVERRIDES_TAG, "{}"))
    tags = {}
    for change in changes:
        tags[f"{CHANGED_PREFIX}{change.key}"] = _fit(f"{change.before} -> {change.after} ({where})")
        overrides[change.key] = change.after
    tags[OVERRIDES_TAG] = _fit(json.dumps(overrides, sort_keys=True))
    client.log_batch(run.info.run_id, tags=[RunTag(key, value) for key, value in tags.items()])


def mark_ended(client: MlflowClient, run_id: str, error: BaseException, cause: BaseException | None = None,
               trace: str | None = None) -> str:
    """End the run FAILED (any error) or KILLED (an interrupt), with the error as a tag and its traceback as
    ``error.txt``; returns the status. ``cause`` and ``trace``: the exception behind ``error`` and its traceback, where
    the caller unwrapped a Ray failure (``train.failures.cause_and_traceback``); by default ``error`` and its own."""
    status = "KILLED" if isinstance(error, (KeyboardInterrupt, SystemExit)) else "FAILED"
    cause = error if cause is None else cause
    if trace is None:
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    message = str(cause).strip() or "interrupted"
    client.set_tag(run_id, ERROR_TAG, _fit(f"{type(cause).__name__}: {message}"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ERROR_ARTIFACT
        path.write_text(trace)
        try:
            client.log_artifact(run_id, str(path))
        except OSError:  # the tag above still says what happened
            pass
    client.set_terminated(run_id, status=status)
    return status


def mark_launch_ended(uri: str, experiment: str, key: str, launch: str, error: BaseException,
                      cause: BaseException | None = None, trace: str | None = None) -> str | None:
    """After a launch failed: end its run if this launch opened it and it is still RUNNING (a worker that died, or
    an error the loop did not get to record). A run this launch never opened is left as it is. ``cause``, ``trace``:
    as ``mark_ended``'s."""
    client = store.client(uri)
    found = client.get_experiment_by_name(experiment)
    run = find_run(client, found.experiment_id, key) if found else None
    if run is None or run.info.status != "RUNNING" or run.data.tags.get(LAUNCH_TAG) != launch:
        return None
    return mark_ended(client, run.info.run_id, error, cause, trace)


def _fit(value: str) -> str:
    return value if len(value) <= TAG_LIMIT else value[:TAG_LIMIT - 15] + " ... (cut)"


def check_resume(uri: str, config, manifest_digest: str | None, record: bool = True) -> None:
    """Before a launch: if the config's run already exists in MLflow, refuse settings that differ from the ones it
    was trained with (``config.identity``) and record the safe changes on it (unless ``record`` is false: a
    finished grid cell that is checked, not run again, is left exactly as it is)."""
    from fusionlab.config.identity import config_changes, dataset_change, refuse_unsafe

    client = store.client(uri)
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    run = find_run(client, experiment.experiment_id, config.run_name()) if experiment else None
    if run is None:
        return
    changes = config_changes(effective_params(run), config.flat())
    data = manifest_digest and dataset_change(run.data.tags.get(MANIFEST_TAG), manifest_digest)
    where = f"MLflow run {run.info.run_id} in experiment {config.tracking.experiment!r}"
    safe = refuse_unsafe([*changes, data] if data else changes, config.run_name(), where)
    if record:
        record_changes(client, run, safe, epoch=None)
