"""`fusionlab tune`: a 2-trial Optuna sweep on CPU killed after a finished trial, resumed, then checked whole.

How a sweep's trials map to Optuna trials across a restart is tests/tune/test_study_searcher.py; how a sweep whose
every trial failed ends (error, exit code, parent run) is tests/tune/test_sweep_summary.py."""

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from fusionlab.data.synthetic import write_synthetic
from fusionlab.tracking import default_tracking_uri
from process_group import kill_group, run_in_own_group
from tiny_grids import parent_and_children

pytestmark = [pytest.mark.slow, pytest.mark.ray_experiment]

NUM_SAMPLES = 2  # a trial finished before the kill, one run after the resume
BOUNDS = {"model.params.lambda": (1e-4, 1e-1), "model.params.threshold": (0.005, 0.05),
          "model.params.portion": (0.1, 0.5)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "synthetic"
    write_synthetic(out, train=16, val=8, test=4, size=(48, 64), seed=0)
    return out


def sweep_config(tmp_path, data, experiment, scheduler):
    tree = {
        "data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [48, 64], "scale_range": [0.9, 1.1]},
        "model": {"name": "cen", "backbone": "resnet_mini"},
        "train": {"epochs": 2, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3},
        "resources": {"num_workers": 1},
        "tracking": {"experiment": experiment},
        "search": {"space": {key: {"type": "loguniform" if key.endswith("lambda") else "uniform",
                                   "low": low, "high": high} for key, (low, high) in BOUNDS.items()},
                   "num_samples": NUM_SAMPLES, "seed": 3, "name": experiment, "scheduler": {"type": scheduler}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def environment(tmp_marker: Path) -> dict:
    return {**os.environ, "RAY_TMPDIR": str(tmp_marker), "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0",
            "MLFLOW_DISABLE_TELEMETRY": "true"}


def cleanup(marker: Path) -> None:
    """Ray's temp dir of a sweep whose processes are gone (each ran in its own process group: process_group.py)."""
    shutil.rmtree(marker, ignore_errors=True)


def children_of_sweep(workdir: Path, experiment: str):
    return parent_and_children(workdir, experiment, "sweep")


def completed_trials(study_db: Path, name: str) -> set[int]:
    """Numbers of the study's finished trials, read through a read-only connection.

    ``optuna.load_study`` would create the schema when it is missing, and the sweep may be creating it at that moment:
    the two writers then collide on Optuna's ``alembic_version`` row. Reading only never races the sweep.
    """
    if not study_db.exists():
        return set()
    query = ("SELECT t.number FROM trials t JOIN studies s ON s.study_id = t.study_id "
             "WHERE s.study_name = ? AND t.state = 'COMPLETE'")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{study_db}?mode=ro", uri=True, timeout=30)) as db:
            return {number for (number,) in db.execute(query, (name,))}
    except sqlite3.OperationalError:  # the sweep has not created the tables yet
        return set()


def test_a_killed_optuna_sweep_resumes_without_rerunning_finished_trials_and_is_summarised(data, tmp_path):
    """One sweep through the CLI: killed after a finished trial, resumed with ``--resume``, then checked whole.
    (Which Optuna trial a restored or new Tune trial gets is tests/tune/test_study_searcher.py; no ASHA here:
    tests/tune/test_asha_stops.py runs a sweep with stops.)"""
    config = sweep_config(tmp_path, data, "sweep-resume", "none")
    workdir, marker = tmp_path / "runs", Path(f"/tmp/fls-{os.getpid()}-b")
    sweep_dir = workdir / "sweeps" / "sweep-resume"
    command = [sys.executable, "-m", "fusionlab.cli", "--workdir", str(workdir), "tune"]
    try:
        with open(tmp_path / "first.log", "w") as log:
            first = subprocess.Popen([*command, str(config)], stdout=log, stderr=subprocess.STDOUT,
                                     env=environment(marker), start_new_session=True)
            deadline = time.time() + 600
            while not completed_trials(sweep_dir / "optuna.db", "sweep-resume") and time.time() < deadline:
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                time.sleep(1)
            finished_before = completed_trials(sweep_dir / "optuna.db", "sweep-resume")
            assert 1 <= len(finished_before) < NUM_SAMPLES, finished_before
            kill_group(first)
        cleanup(marker)
        _, _, children = children_of_sweep(workdir, "sweep-resume")
        history_before = {c.info.run_id: len(MlflowClient(default_tracking_uri(workdir)).get_metric_history(
            c.info.run_id, "train/loss")) for c in children if c.info.status == "FINISHED"}
        assert len(history_before) >= 1

        second = run_in_own_group([*command, "--resume", str(sweep_dir)], env=environment(marker), timeout=900)
    finally:
        cleanup(marker)
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    assert "best trial" in second.stdout and "val/miou" in second.stdout
    client, parent, children = children_of_sweep(workdir, "sweep-resume")
    assert len(children) == NUM_SAMPLES, "one child run per trial, none duplicated"
    assert {c.info.status for c in children} == {"FINISHED"}
    for child in children:
        for key, (low, high) in BOUNDS.items():
            assert low <= float(child.data.params[key]) <= high, (key, child.data.params[key])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "best_config.json", "plots"} <= artifacts
    study_trials = optuna.load_study(study_name="sweep-resume", storage=f"sqlite:///{sweep_dir / 'optuna.db'}").trials
    assert len(study_trials) == NUM_SAMPLES
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study_trials)
    for run_id, length in history_before.items():
        steps = [m.step for m in client.get_metric_history(run_id, "train/loss")]
        assert len(steps) == length == 2 and sorted(steps) == [0, 1], "finished trials were not run again"
