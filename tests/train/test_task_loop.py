"""Segmentation and translation go through the one ``train_loop``: the task is chosen once from the manifest, each
trains, resumes from its checkpoint (translation's with its discriminator) and logs its plots and its own predictor
through the one ``RunTracker.log_final``."""

import pytest
from mlflow.tracking import MlflowClient
from train_configs import config_tree

from fusionlab.data.synthetic_translation import write_synthetic_translation
from fusionlab.tracking import default_tracking_uri, load_model
from fusionlab.tracking.runs import RunTracker
from fusionlab.train import loop
from fusionlab.train.checkpoint import load_checkpoint
from fusionlab.train.driver import run_local
from fusionlab.train.prepare import parse_config
from fusionlab.train.segmentation_task import SegmentationTask
from fusionlab.train.translation_task import TranslationTask

SEGMENTATION_PLOTS = {"gamma_histograms.png", "exchange_by_layer.png", "predictions.png", "confusion_matrix.png"}
TRANSLATION_PLOTS = {"gamma_histograms.png", "exchange_by_layer.png", "translations.png"}


@pytest.fixture(scope="module")
def translation_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "translation"
    write_synthetic_translation(out, train=8, val=4, test=4, size=(32, 32), seed=0)
    return out


def segmentation_config(data, epochs):
    return parse_config(config_tree(data, train={"epochs": epochs}))


def translation_config(data, epochs):
    return parse_config({
        "data": {"path": str(data), "modalities": ["normal", "reshading"], "scale_range": [1.0, 1.0]},
        "model": {"name": "cen", "backbone": "unet_mini"},
        "train": {"epochs": epochs, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3,
                  "fid": {"features": "local", "kid_subsets": 5}},
        "tracking": {"experiment": "tests"}})


CASES = {
    "segmentation": (segmentation_config, "small_synthetic", SegmentationTask, SEGMENTATION_PLOTS, set()),
    "translation": (translation_config, "translation_data", TranslationTask, TRANSLATION_PLOTS,
                    {"discriminator", "discriminator_optimizer"}),
}


@pytest.mark.usefixtures("no_inception_file")
@pytest.mark.parametrize("task", list(CASES))
def test_each_task_trains_resumes_and_logs_through_the_one_loop(task, request, tmp_path, monkeypatch):
    make_config, data_fixture, task_class, plots, extra_keys = CASES[task]
    data = request.getfixturevalue(data_fixture)
    chosen, finals = [], []
    real_task_for, real_log_final = loop.task_for, RunTracker.log_final

    def task_for(config, manifest):
        chosen.append(real_task_for(config, manifest))
        return chosen[-1]

    def log_final(self, figures, predictor):
        finals.append((set(figures), predictor.task))
        return real_log_final(self, figures, predictor)

    monkeypatch.setattr(loop, "task_for", task_for)
    monkeypatch.setattr(RunTracker, "log_final", log_final)

    first = make_config(data, 2)
    assert [r["epoch"] for r in run_local(first, tmp_path)] == [0, 1]
    checkpoints = tmp_path / "checkpoints" / first.run_name()
    saved = load_checkpoint(sorted(checkpoints.glob("epoch_*"))[-1])
    assert set(saved) & {"discriminator", "discriminator_optimizer"} == extra_keys

    resumed = make_config(data, 3)
    assert [r["epoch"] for r in run_local(resumed, tmp_path)] == [2], "resumed from its checkpoint, not restarted"
    assert [type(chosen_task) for chosen_task in chosen] == [task_class, task_class]
    assert finals == [(plots, task), (plots, task)], "the selected model logged once per launch that trained"

    client = MlflowClient(default_tracking_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss")) == [0, 1, 2]
    assert {item.path.removeprefix("plots/") for item in client.list_artifacts(run.info.run_id, "plots")} == plots
    assert load_model(f"runs:/{run.info.run_id}/model", default_tracking_uri(tmp_path)).task == task
