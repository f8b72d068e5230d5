"""A sweep end to end on CPU: Optuna samples λ, θ, the portion and the learning rates, ASHA stops a trial on exactly
the CPUs the trials need, the sweep is killed with its process group mid-trial, resumed through the CLI, and checked
whole.

A stopped trial's Train run leaves its placement group behind (fusionlab/train/placement.py); unless the trial driver
releases it, the next trial's Ray Data tasks never get a CPU and the sweep hangs. The first launch's Ray has no
dashboard, so Ray Train's own PlacementGroupCleaner cannot see the stopped controller die: only fusionlab's release
frees the CPU. (Which Optuna trial a restored or new Tune trial gets is tests/tune/test_study_searcher.py; how a sweep
whose every trial failed ends is tests/tune/test_sweep_summary.py; the release itself is tests/tune/test_asha_stops.py.)
"""

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from fusionlab.data.synthetic import write_synthetic
from process_group import kill_group, run_in_own_group
from tiny_grids import parent_and_children

pytestmark = [pytest.mark.slow, pytest.mark.ray_experiment]

EPOCHS = 2
NUM_SAMPLES = 3  # the first trial finishes, ASHA stops the second, the third runs after it and is killed mid-way
BOUNDS = {"model.params.lambda": (1e-4, 1e-1), "model.params.threshold": (0.005, 0.05),
          "model.params.portion": (0.1, 0.5)}
EXPERIMENT = "sweep-asha"

# The first launch: exactly the logical CPUs one trial needs (1 worker x 1 CPU + 1 CPU for Ray Data), no dashboard.
FIRST_LAUNCH = """
import sys
from fusionlab.train.prepare import load_config
from fusionlab.train.local_ray import init_local_ray
from fusionlab.tune.sweep import DRIVER_RESOURCE, start_sweep

init_local_ray(num_cpus=2, resources={DRIVER_RESOURCE: 1}, include_dashboard=False, _temp_dir=sys.argv[3])
start_sweep(load_config(sys.argv[1]), sys.argv[2])
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "synthetic"
    write_synthetic(out, train=16, val=8, test=4, size=(48, 64), seed=0)
    return out


def sweep_config(tmp_path: Path, data: Path) -> Path:
    # train/loss is continuous (no ties at a rung) and the learning rates span five decades, so the seeded samples
    # differ clearly: the second trial is worse than the first at its first report and ASHA stops it there; the
    # third is better than the median of the two and goes on.
    lr = {"type": "loguniform", "low": 1e-6, "high": 1e-1}
    space = {key: {"type": "loguniform" if key.endswith("lambda") else "uniform", "low": low, "high": high}
             for key, (low, high) in BOUNDS.items()}
    tree = {
        "data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [48, 64], "scale_range": [0.9, 1.1]},
        "model": {"name": "cen", "backbone": "resnet_mini"},
        "train": {"epochs": EPOCHS, "batch_size": 4, "optimizer": "sgd", "lr_encoder": 1e-3, "lr_decoder": 1e-3},
        "resources": {"num_workers": 1},
        "tracking": {"experiment": EXPERIMENT},
        "search": {"space": {**space, "train.lr_encoder": lr, "train.lr_decoder": lr}, "metric": "train/loss",
                   "mode": "min", "num_samples": NUM_SAMPLES, "seed": 3, "name": EXPERIMENT,
                   "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def environment() -> dict:
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true",
            "PYTHONUNBUFFERED": "1"}


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


def losses(client: MlflowClient, run) -> list:
    return sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda metric: metric.step)


def third_trial_training(workdir: Path) -> bool:
    """Two trials ended (Optuna has both) and the third's run has logged its first epoch, not its last."""
    if len(completed_trials(workdir / "sweeps" / EXPERIMENT / "optuna.db", EXPERIMENT)) < 2:
        return False
    try:
        _, _, children = parent_and_children(workdir, EXPERIMENT, "sweep")
    except Exception:  # the SQLite store busy with the trial's writes: ask again
        return False
    if len(children) < NUM_SAMPLES:
        return False
    newest = max(children, key=lambda run: run.info.start_time)
    return newest.info.status == "RUNNING" and "train/loss" in newest.data.metrics


def test_a_killed_asha_sweep_resumes_without_rerunning_its_ended_trials_and_is_summarised(data, tmp_path):
    config = sweep_config(tmp_path, data)
    workdir, marker = tmp_path / "runs", Path(f"/tmp/fls-{os.getpid()}")  # Ray's socket paths are length-limited
    sweep_dir = workdir / "sweeps" / EXPERIMENT
    try:
        with open(tmp_path / "first.log", "w") as log:
            first = subprocess.Popen([sys.executable, "-c", FIRST_LAUNCH, str(config), str(workdir), str(marker)],
                                     stdout=log, stderr=subprocess.STDOUT, env=environment(), start_new_session=True)
            deadline = time.time() + 600  # a bound on a hang (a stopped trial that kept its CPU), not a speed target
            while not third_trial_training(workdir):
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-4000:]
                assert time.time() < deadline, "the third trial never trained: did the stopped trial keep its CPU? " \
                    + (tmp_path / "first.log").read_text()[-3000:]
                time.sleep(0.5)
            kill_group(first)
        shutil.rmtree(marker, ignore_errors=True)

        client, _, children = parent_and_children(workdir, EXPERIMENT, "sweep")
        finished, stopped, killed = sorted(children, key=lambda run: run.info.start_time)
        before = {run.info.run_id: [(m.step, m.timestamp) for m in losses(client, run)] for run in (finished, stopped)}
        assert finished.info.status == "FINISHED"
        assert [step for step, _ in before[finished.info.run_id]] == list(range(EPOCHS))
        # Stopped at its first report, the second trial may log one more epoch before its Train run is torn down,
        # never the final scores of a partly trained model (the trials run one at a time: the third started once
        # the second had ended). Train V2's report does not wait for Tune's decision, so with 2 epochs the stop can
        # reach the worker after it has trained its last epoch and scored it: those are then a whole run's figures.
        trained = [m.step for m in losses(client, stopped)]
        assert stopped.info.status == "RUNNING"
        assert "test/miou" not in stopped.data.metrics or trained == list(range(EPOCHS)), trained
        assert losses(client, killed)[0].timestamp > before[stopped.info.run_id][-1][1], \
            "the third trial trained after the stop, on the CPU the stopped one had"

        command = [sys.executable, "-m", "fusionlab.cli", "--workdir", str(workdir), "tune", "--resume",
                   str(sweep_dir)]
        second = run_in_own_group(command, env={**environment(), "RAY_TMPDIR": str(marker)}, timeout=900)
    finally:
        shutil.rmtree(marker, ignore_errors=True)
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    assert "best trial" in second.stdout and "train/loss" in second.stdout

    client, parent, children = parent_and_children(workdir, EXPERIMENT, "sweep")
    assert len(children) == NUM_SAMPLES, "one child run per trial, none duplicated"
    by_id = {run.info.run_id: run for run in children}
    for run_id, history in before.items():
        assert [(m.step, m.timestamp) for m in losses(client, by_id[run_id])] == history, "an ended trial ran again"
    assert by_id[finished.info.run_id].info.status == "FINISHED"
    resumed = by_id[killed.info.run_id]
    assert resumed.info.status == "FINISHED" and [m.step for m in losses(client, resumed)] == list(range(EPOCHS)), \
        "the killed trial continued in its own run, each epoch logged once"
    # In MLflow a stopped trial is KILLED and marked stopped early, never FAILED: its trial driver may see its Train
    # controller die (ActorDiedError) before Tune ends it, which is the stop, not an error.
    stop = by_id[stopped.info.run_id]
    assert stop.info.status == "KILLED" and stop.data.tags["fusionlab.stopped_early"] == "true"
    assert "fusionlab.error" not in stop.data.tags
    for child in children:
        for key, (low, high) in BOUNDS.items():
            assert low <= float(child.data.params[key]) <= high, (key, child.data.params[key])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "best_config.json", "plots"} <= artifacts
    trials = pd.read_csv(client.download_artifacts(parent.info.run_id, "trials.csv", str(tmp_path)))
    assert sorted(trials["epochs"]) == [1, EPOCHS, EPOCHS], "Tune saw the stopped trial's first report only"
    study_trials = optuna.load_study(study_name=EXPERIMENT, storage=f"sqlite:///{sweep_dir / 'optuna.db'}").trials
    assert len(study_trials) == NUM_SAMPLES
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study_trials)
