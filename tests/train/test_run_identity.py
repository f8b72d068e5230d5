"""A run's config is part of its identity: starting a run again under its name resumes it only with the settings it
was trained with, or with changes that are safe, which are recorded (issue 14, item 2)."""

import json
import shutil

import pytest
from mlflow.tracking import MlflowClient
from train_configs import config_tree

from fusionlab.config import ConfigError
from fusionlab.data.synthetic import write_synthetic
from fusionlab.tracking import default_tracking_uri
from fusionlab.tracking.registry import promote
from fusionlab.tracking.tags import PromotionTags
from fusionlab.train.driver import run_local
from fusionlab.train.prepare import parse_config


def config(data, **sections):
    tracking = {"experiment": "identity", "run_name": "the-run", **sections.pop("tracking", {})}
    train = {"epochs": 1, **sections.pop("train", {})}
    return parse_config(config_tree(data, tracking=tracking, train=train, **sections))


def runs(workdir, experiment="identity"):
    client = MlflowClient(default_tracking_uri(workdir))
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def checkpoint_files(workdir):
    return sorted(p.relative_to(workdir) for p in (workdir / "checkpoints").rglob("*") if p.is_file())


@pytest.fixture
def trained(small_synthetic, tmp_path):
    """One epoch of CEN as run 'the-run' in experiment 'identity'."""
    run_local(config(small_synthetic), tmp_path)
    return small_synthetic, tmp_path


def test_another_model_under_a_checkpoint_is_refused_and_the_run_is_untouched(trained):
    data, workdir = trained
    (before,) = runs(workdir)
    files = checkpoint_files(workdir)
    with pytest.raises(ConfigError, match=r"model\.name: cen -> asymfusion") as refused:
        run_local(config(data, model={"name": "asymfusion"}), workdir)
    assert "the-run" in str(refused.value) and "tracking.run_name" in str(refused.value)
    (after,) = runs(workdir)
    assert after.info.run_id == before.info.run_id and after.info.status == "FINISHED"
    assert after.data.params["model.name"] == "cen"
    assert after.data.metrics == before.data.metrics
    assert checkpoint_files(workdir) == files


def test_a_changed_learning_rate_is_refused_naming_the_key(trained):
    data, workdir = trained
    with pytest.raises(ConfigError, match=r"train\.lr_encoder: 0\.001 -> 0\.002"):
        run_local(config(data, train={"lr_encoder": 2e-3}), workdir)


def test_the_checkpoint_refuses_a_changed_config_when_mlflow_has_no_run(trained):
    # Another experiment has no run of this name, so only the checkpoint (keyed by the run name) can tell.
    data, workdir = trained
    with pytest.raises(ConfigError, match=r"checkpoint of epoch 0.*model\.params\.threshold: 0\.02 -> 0\.05"):
        run_local(config(data, tracking={"experiment": "elsewhere"}, model={"params": {"threshold": 0.05}}), workdir)
    assert runs(workdir, "elsewhere") == []  # refused before a run was opened


def test_a_regenerated_dataset_under_the_same_path_is_refused(small_synthetic, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_synthetic, data)
    run_local(config(data), tmp_path)
    shutil.rmtree(data)
    write_synthetic(data, train=32, val=8, test=8, size=(48, 64), seed=1)  # other scenes, same path
    with pytest.raises(ConfigError, match=r"dataset \(manifest sha256\)"):
        run_local(config(data), tmp_path)


def test_a_safe_change_resumes_is_recorded_and_reaches_the_registry(trained):
    data, workdir = trained
    reports = run_local(config(data, train={"epochs": 2}), workdir)
    assert [r["epoch"] for r in reports] == [1]  # resumed after epoch 0
    (run,) = runs(workdir)
    assert run.info.status == "FINISHED"
    assert run.data.tags["fusionlab.changed.train.epochs"] == "1 -> 2 (on resume)"
    assert json.loads(run.data.tags["fusionlab.param_overrides"]) == {"train.epochs": "2"}
    assert run.data.params["train.epochs"] == "1"  # MLflow params are write-once: the tags carry the change
    promotion = promote(default_tracking_uri(workdir), ["identity"])
    uri = default_tracking_uri(workdir)
    version = MlflowClient(uri, registry_uri=uri).get_model_version(promotion.name, promotion.version)
    assert json.loads(version.tags[PromotionTags.CONFIG])["train.epochs"] == "2"


def test_resuming_with_the_same_config_changes_nothing(trained):
    data, workdir = trained
    reports = run_local(config(data), workdir)
    assert [r["epoch"] for r in reports] == [0]  # restored after its last epoch: the final report again
    (run,) = runs(workdir)
    assert not any(key.startswith("fusionlab.changed.") for key in run.data.tags)
    assert run.data.tags["fusionlab.starts"] == "2"


def test_a_run_recorded_before_model_params_is_compared_under_the_current_keys():
    from fusionlab.config.identity import config_changes

    before = {"model.cen.threshold": 0.02, "model.cen.lambda": None, "model.modality": "rgb", "train.epochs": 2}
    after = {"model.params.threshold": 0.05, "model.params.lambda": None, "model.params.modality": "rgb",
             "train.epochs": 4}
    changes = {change.key: change for change in config_changes(before, after)}
    assert set(changes) == {"model.params.threshold", "train.epochs"}
    assert not changes["model.params.threshold"].safe and changes["train.epochs"].safe
    assert (changes["model.params.threshold"].before, changes["model.params.threshold"].after) == ("0.02", "0.05")
