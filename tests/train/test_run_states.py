"""Runs end in an honest state: FAILED with the error when training or scoring fails, KILLED when interrupted, and a
rerun after a failed end finishes the run with its model; promote passes over runs without a model (issue 14,
item 6)."""

import pytest
from mlflow.tracking import MlflowClient
from train_configs import config_tree

import fusionlab.train.segmentation_task as segmentation
from fusionlab.errors import TrainingDiverged
from fusionlab.tracking import default_tracking_uri
from fusionlab.tracking.lifecycle import ERROR_ARTIFACT, ERROR_TAG, FINAL_TAG
from fusionlab.tracking.registry import promote
from fusionlab.train.driver import run_local
from fusionlab.train.prepare import parse_config


def config(data, **train):
    return parse_config(config_tree(data, tracking={"experiment": "states", "run_name": "the-run"},
                                    train={"epochs": 1, **train}))


def the_run(workdir):
    client = MlflowClient(default_tracking_uri(workdir))
    (run,) = client.search_runs([client.get_experiment_by_name("states").experiment_id])
    return client, run


def artifacts(client, run):
    return {a.path for a in client.list_artifacts(run.info.run_id)}


def test_a_diverged_run_ends_failed_with_its_error(small_synthetic, tmp_path):
    diverging = config(small_synthetic, optimizer="sgd", lr_encoder=1e6, lr_decoder=1e6)
    with pytest.raises(TrainingDiverged, match="not finite"):
        run_local(diverging, tmp_path)
    client, run = the_run(tmp_path)
    assert run.info.status == "FAILED"
    assert run.data.tags[ERROR_TAG].startswith("TrainingDiverged: training loss was not finite")
    assert ERROR_ARTIFACT in artifacts(client, run)


def test_an_interrupted_run_ends_killed(small_synthetic, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(segmentation, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_local(config(small_synthetic), tmp_path)
    _, run = the_run(tmp_path)
    assert run.info.status == "KILLED"


def test_a_crash_while_scoring_test_fails_the_run_and_a_rerun_finishes_it(small_synthetic, tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("test split unreadable")

    with monkeypatch.context() as patch:
        patch.setattr(segmentation, "test_scores", crash)
        with pytest.raises(RuntimeError, match="test split unreadable"):
            run_local(config(small_synthetic), tmp_path)
    client, run = the_run(tmp_path)
    assert run.info.status == "FAILED" and run.data.tags[ERROR_TAG] == "RuntimeError: test split unreadable"
    assert "test/miou" not in run.data.metrics and FINAL_TAG not in run.data.tags

    run_local(config(small_synthetic), tmp_path)  # restored after its last epoch: the final part is done now
    client, run = the_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags[FINAL_TAG] == "logged"
    assert "test/miou" in run.data.metrics and ERROR_TAG not in run.data.tags
    assert "model" in {m.name for m in client.search_logged_models([run.info.experiment_id])
                       if m.source_run_id == run.info.run_id}
    assert promote(default_tracking_uri(tmp_path), ["states"]).candidate.run_id == run.info.run_id


def test_promote_passes_over_a_better_run_without_a_model(small_synthetic, tmp_path):
    run_local(config(small_synthetic), tmp_path)
    client, trained = the_run(tmp_path)
    # A run that finished without its model (as a crash after the last epoch used to leave it), scoring higher.
    modelless = client.create_run(trained.info.experiment_id, run_name="no-model",
                                  tags={k: v for k, v in trained.data.tags.items()
                                        if not k.startswith("mlflow.") and k != "fusionlab.run_key"})
    client.log_metric(modelless.info.run_id, "val/miou", trained.data.metrics["val/miou"] + 0.5)
    client.set_terminated(modelless.info.run_id, "FINISHED")
    promotion = promote(default_tracking_uri(tmp_path), ["states"])
    assert promotion.candidate.run_id == trained.info.run_id
    assert promotion.skipped == (f"run no-model ({modelless.info.run_id}) has no logged model 'model' to register",)
