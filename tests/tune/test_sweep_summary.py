"""How a sweep ends, from Tune's results (faked here: no Ray) to the parent run, the best trial and the exit code.

A sweep whose every trial failed is a failure naming the first trial's own error (unwrapped from Ray's), and ends its
parent run FAILED; a sweep with finished trials logs its table to the parent and returns the best one. That a
diverged trial's own run ends FAILED with its error is tests/train/test_ray_failures.py; a whole sweep through the
CLI is tests/tune/test_sweep.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pytest
import ray.exceptions
import yaml
from mlflow.tracking import MlflowClient

from fusionlab.cli import main
from fusionlab.config import Config
from fusionlab.data.synthetic import write_synthetic
from fusionlab.errors import FusionlabError, TrainingDiverged
from fusionlab.tracking import default_tracking_uri
from fusionlab.tracking.sweeps import open_parent_run
from fusionlab.tune import sweep

SPACE = {"model.params.lambda": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}


@dataclass
class FakeResult:
    """The parts of a Tune ``Result`` that ``summarise`` reads."""

    metrics: dict[str, Any] | None
    config: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None


def tree(data: Path, name: str) -> dict:
    return {"data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [48, 64]},
            "model": {"name": "cen", "backbone": "resnet_mini"},
            "train": {"epochs": 2}, "tracking": {"experiment": name},
            "search": {"space": SPACE, "num_samples": 2, "seed": 3, "name": name}}


@pytest.fixture
def parent(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = default_tracking_uri(tmp_path / "runs")
    run_id = open_parent_run(uri, "sweep-x", "sweep-x", {"search.num_samples": 2}, kind="sweep",
                             artifact_root=tmp_path / "runs" / "mlartifacts")
    return {"name": "sweep-x", "tracking_uri": uri, "parent_run_id": run_id}


def study_with(tmp_path, states: list[tuple[optuna.trial.TrialState, float | None]]) -> str:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="sweep-x", storage=storage, direction="maximize")
    for state, value in states:
        trial = study.ask({"model.params.lambda": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
        study.tell(trial, value, state=state)
    return storage


def diverged_as_tune_reports_it() -> BaseException:
    """A trial's error as Tune hands it over: the trainable's task error around what ``run_ray`` raised, the
    worker's own error (tests/train/test_ray_failures.py)."""
    diverged = TrainingDiverged("training loss was not finite at epoch 0 (step 1: nan)")
    return ray.exceptions.RayTaskError("trial_fn", "Traceback (trial) ...", diverged)


def test_a_sweep_whose_every_trial_failed_is_an_error_naming_the_first_and_fails_its_parent(tmp_path, parent):
    config = Config.model_validate(tree(tmp_path, "sweep-x"))  # no dataset needed
    storage = study_with(tmp_path, [(optuna.trial.TrialState.FAIL, None)])
    results = [FakeResult({"trial_id": "aaaa0001"}, {"model.params.lambda": 0.01}, diverged_as_tune_reports_it())]
    with pytest.raises(FusionlabError) as failed:
        sweep.summarise(parent, config, results, storage)
    message = str(failed.value)
    assert "sweep 'sweep-x': none of its 1 trial(s) reported val/miou (1 failed)" in message
    assert "the first error: TrainingDiverged: training loss was not finite" in message
    assert MlflowClient(parent["tracking_uri"]).get_run(parent["parent_run_id"]).info.status == "FAILED"


def test_finished_trials_give_the_best_and_their_table_on_the_parent(tmp_path, parent):
    config = Config.model_validate(tree(tmp_path, "sweep-x"))  # no dataset needed
    storage = study_with(tmp_path, [(optuna.trial.TrialState.COMPLETE, 0.2), (optuna.trial.TrialState.COMPLETE, 0.4),
                                    (optuna.trial.TrialState.FAIL, None)])
    results = [FakeResult({"trial_id": "aaaa0001", "val/miou": 0.2, "training_iteration": 2},
                          {"model.params.lambda": 0.001}),
               FakeResult({"trial_id": "aaaa0002", "val/miou": 0.4, "training_iteration": 2},
                          {"model.params.lambda": 0.02}),
               FakeResult({"trial_id": "aaaa0003"}, {"model.params.lambda": 0.05}, diverged_as_tune_reports_it())]
    best = sweep.summarise(parent, config, results, storage)
    assert best["trial_id"] == "aaaa0002" and best["val/miou"] == 0.4 and best["model.params.lambda"] == 0.02
    client = MlflowClient(parent["tracking_uri"])
    artifacts = {a.path for a in client.list_artifacts(parent["parent_run_id"])}
    assert {"trials.csv", "best_config.json"} <= artifacts
    local = client.download_artifacts(parent["parent_run_id"], "best_config.json", str(tmp_path / "dl"))
    assert json.loads(Path(local).read_text())["model.params.lambda"] == 0.02


def test_the_cli_exits_1_with_the_sweeps_error(tmp_path, monkeypatch, capsys):
    data = tmp_path / "synthetic"
    write_synthetic(data, train=4, val=2, test=2, size=(48, 64), seed=0)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tree(data, "sweep-x")))

    def failing_sweep(config, workdir, address=None):
        raise FusionlabError("sweep 'sweep-x': none of its 1 trial(s) reported val/miou (1 failed); the first "
                             "error: TrainingDiverged: training loss was not finite")

    monkeypatch.setattr(sweep, "start_sweep", failing_sweep)
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["--workdir", str(tmp_path / "runs"), "tune", str(path)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "none of its 1 trial(s) reported val/miou" in out and "TrainingDiverged" in out
    assert "Traceback" not in out


def test_a_trial_restored_from_its_checkpoint_counts_its_epochs_not_tunes_iterations(tmp_path, parent):
    """Tune counts a restored trial's reports again from 1; the table's epochs are the loop's own (its ``epoch``), so
    a resumed trial that trained both epochs is not taken for one the scheduler stopped after the first."""
    import pandas as pd

    config = Config.model_validate(tree(tmp_path, "sweep-x"))
    storage = study_with(tmp_path, [(optuna.trial.TrialState.COMPLETE, 0.2)] * 3)
    results = [FakeResult({"trial_id": "aaaa0001", "val/miou": 0.2, "epoch": 1, "training_iteration": 2}),
               FakeResult({"trial_id": "aaaa0002", "val/miou": 0.1, "epoch": 0, "training_iteration": 1}),  # stopped
               FakeResult({"trial_id": "aaaa0003", "val/miou": 0.3, "epoch": 1, "training_iteration": 1})]  # restored
    sweep.summarise(parent, config, results, storage)
    client = MlflowClient(parent["tracking_uri"])
    table = pd.read_csv(client.download_artifacts(parent["parent_run_id"], "trials.csv", str(tmp_path / "dl")))
    assert dict(zip(table["trial_id"], table["epochs"], strict=True)) == {"aaaa0001": 2, "aaaa0002": 1,
                                                                           "aaaa0003": 2}
