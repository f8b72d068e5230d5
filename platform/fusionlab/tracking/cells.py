"""Where each run of a grid stands, read from its MLflow run (found by its key): done, running, failed, killed or
pending. Read only: a store that does not exist yet stays so."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import store
from .lifecycle import find_run
from .tags import ERROR_TAG, FINAL_TAG

DONE, RUNNING, FAILED, KILLED, PENDING = "done", "running", "failed", "killed", "pending"
_STATES = {"RUNNING": RUNNING, "FAILED": FAILED, "KILLED": KILLED}


@dataclass(frozen=True)
class RecordedRun:
    """A run's state; ``run_id`` and ``error`` (its error tag) where it has an MLflow run. ``running`` is a RUNNING
    run: live, or left so by a launch that was killed."""

    state: str
    run_id: str | None = None
    error: str | None = None


def store_exists(uri: str) -> bool:
    prefix = "sqlite:///"
    return not uri.startswith(prefix) or Path(uri[len(prefix):]).exists()


def recorded_runs(uri: str, experiment: str, keys: list[str]) -> dict[str, RecordedRun]:
    """Each run key's state in ``experiment`` of the store at ``uri``. FINISHED is done only with its final model
    logged (a loop that stopped after its last epoch but before that is not done yet)."""
    client = store.client(uri) if store_exists(uri) else None
    found_experiment = client.get_experiment_by_name(experiment) if client else None
    if found_experiment is None:
        return {key: RecordedRun(PENDING) for key in keys}
    recorded = {}
    for key in keys:
        run = find_run(client, found_experiment.experiment_id, key)
        if run is None:
            recorded[key] = RecordedRun(PENDING)
            continue
        status, tags = run.info.status, run.data.tags
        if status == "FINISHED":
            state = DONE if tags.get(FINAL_TAG) == "logged" else PENDING
        else:
            state = _STATES.get(status, PENDING)
        recorded[key] = RecordedRun(state, run.info.run_id, tags.get(ERROR_TAG))
    return recorded
