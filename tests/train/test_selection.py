"""Checkpoint selection (train.selection): the kept epoch is the logged one, test is scored with it (or, under
best_test, was the split selected on, and is labelled so), the choice survives a resume, and last keeps the last."""

import math

import pytest
import torch
from mlflow.tracking import MlflowClient
from train_configs import config_tree

from fusionlab.tracking import default_tracking_uri, load_model
from fusionlab.train import segmentation_task
from fusionlab.train.checkpoint import load_checkpoint, save_checkpoint
from fusionlab.train.driver import run_local
from fusionlab.train.evaluate import evaluate
from fusionlab.train.prepare import parse_config
from fusionlab.train.selection import UNRANKED, Selection, cpu_copy

# --- the rule ---


def selection(mode="best_val", lower_is_better=False):
    return Selection(mode, "val/score", lower_is_better)


def offered(chooser, scores, model=None):
    model = model or torch.nn.Linear(2, 1)
    for epoch, score in enumerate(scores):
        chooser.offer(epoch, {"val/score": score}, model)
    return chooser.epoch


def test_the_best_epoch_is_kept_ties_keep_the_earlier_and_non_finite_scores_lose():
    assert offered(selection(), [0.2, 0.9, 0.5, 0.9]) == 1
    assert offered(selection(lower_is_better=True), [40.0, 30.0, 35.0]) == 1  # FID
    assert offered(selection(), [math.nan, 0.1, math.nan, 0.05]) == 1
    assert offered(selection(), [math.nan, math.nan]) == 1, "no finite score at all: the latest, as last keeps"
    assert offered(selection("last"), [0.2, 0.9, 0.5]) == 2


def test_the_kept_weights_are_a_cpu_copy_reused_across_new_bests_and_none_for_a_final_epoch():
    model = torch.nn.Linear(2, 1)
    chooser = selection()
    chooser.offer(0, {"val/score": 0.5}, model)
    kept = chooser.state
    first = kept["weight"].clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    assert torch.equal(chooser.state["weight"], first), "a copy, not a view of the training weights"
    chooser.offer(1, {"val/score": 0.6}, model)
    assert chooser.state is kept and torch.equal(kept["weight"], model.weight), "same buffers, new values"
    chooser.offer(2, {"val/score": 0.7}, model, final=True)
    assert chooser.state is None, "nothing trains after the final epoch: the model holds the kept weights"
    last = selection("last")
    last.offer(0, {"val/score": 0.1}, model)
    assert last.state is None, "last never copies"
    assert cpu_copy(model.state_dict())["weight"].device.type == "cpu"


def test_the_selection_survives_a_checkpoint_loaded_with_weights_only(tmp_path):
    model = torch.nn.Linear(2, 1)
    chooser = selection()
    chooser.offer(0, {"val/score": 0.9}, model, matrix=torch.eye(3, dtype=torch.int64), examples=[])
    best = {key: value.clone() for key, value in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    chooser.offer(1, {"val/score": 0.1}, model)
    save_checkpoint(tmp_path / "a", {"model": model.state_dict(), "selection": chooser.state_dict(1)})
    assert load_checkpoint(tmp_path / "a")["selection"]["model"] is None, "no copy of epoch 0's weights in epoch 1's"
    kept = {0: {"model": best}}  # epoch 0's own checkpoint, kept because it ranks first
    assert chooser.checkpoint_score(0) > chooser.checkpoint_score(1) == UNRANKED
    restored = selection()
    restored.load_state_dict(load_checkpoint(tmp_path / "a")["selection"], 1, model, kept.__getitem__)
    assert (restored.epoch, restored.score, restored.metrics) == (0, 0.9, {"val/score": 0.9})
    assert torch.equal(restored.state["weight"], best["weight"]) and torch.equal(restored.extras["matrix"],
                                                                                 torch.eye(3, dtype=torch.int64))

    # The checkpoint of the kept epoch itself does not store its weights twice; restored, they are copied out.
    current = selection()
    current.offer(1, {"val/score": 0.9}, model)
    saved = current.state_dict(1)
    assert saved["model"] is None
    again = selection()
    again.load_state_dict(saved, 1, model, {}.__getitem__)
    assert again.state is not None and torch.equal(again.state["weight"], model.weight)
    assert again.state["weight"].data_ptr() != model.weight.data_ptr()

    fresh = selection("best_test")
    fresh.load_state_dict(saved, 1, model, {}.__getitem__)  # selected on another split: start afresh
    assert fresh.epoch is None


# --- in the training loop ---


REAL_SET_EPOCH_LR, REAL_VALIDATE = segmentation_task.set_epoch_lr, segmentation_task.validate


class Killed(Exception):
    """The run stops here, as a killed process would (after its last checkpoint)."""


def scripted_validation(monkeypatch, scores: dict[int, float], crash_at: int | None = None):
    """The loop's validation with its ensemble mIoU replaced by ``scores[epoch]`` (the branches' and the other
    metrics stay real); ``crash_at``: the epoch whose validation raises, as a killed run would stop."""
    epoch_of = {}

    def set_epoch_lr(optimizer, train, epoch):
        epoch_of["now"] = epoch
        return REAL_SET_EPOCH_LR(optimizer, train, epoch)

    def validate(*args, **kwargs):
        epoch = epoch_of["now"]
        if epoch == crash_at:
            raise Killed(f"epoch {epoch}")
        metrics, matrix, examples = REAL_VALIDATE(*args, **kwargs)
        metrics[f"{kwargs['prefix']}/miou"] = scores[epoch]
        return metrics, matrix, examples

    monkeypatch.setattr(segmentation_task, "set_epoch_lr", set_epoch_lr)
    monkeypatch.setattr(segmentation_task, "validate", validate)


def the_run(workdir, experiment="tests"):
    client = MlflowClient(default_tracking_uri(workdir))
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, run


def history(client, run, key):
    return {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}


def checkpoint_weights(workdir, config, epoch):
    return load_checkpoint(workdir / "checkpoints" / config.run_name() / f"epoch_{epoch:04d}")["model"]


def assert_logged_weights(workdir, run, expected, other):
    predictor = load_model(f"runs:/{run.info.run_id}/model", default_tracking_uri(workdir))
    logged = predictor.model.state_dict()
    assert all(torch.equal(logged[key], value) for key, value in expected.items())
    assert not all(torch.equal(logged[key], value) for key, value in other.items()), "epochs differ: a real check"
    return predictor


def test_best_val_logs_the_early_peak_and_scores_test_once_with_it(small_synthetic, tmp_path, monkeypatch):
    # validation every 2nd epoch and on the last: epochs 1, 3, 4; the peak is epoch 1.
    scripted_validation(monkeypatch, {1: 0.9, 3: 0.5, 4: 0.4})
    config = parse_config(config_tree(small_synthetic, train={"epochs": 5, "val_every": 2,
                                                                     "keep_checkpoints": 5}))
    reports = run_local(config, tmp_path)
    assert [("val/miou" in r) for r in reports] == [False, True, False, True, True]

    client, run = the_run(tmp_path)
    assert run.data.tags["fusionlab.selection"] == "best_val" and run.data.tags["fusionlab.selection_split"] == "val"
    assert history(client, run, "selected_epoch") == {5: 1}
    # each validation at its epoch, and the selected one's again at step `epochs`: the final value is the model's
    assert history(client, run, "val/miou") == {1: 0.9, 3: 0.5, 4: 0.4, 5: 0.9}
    assert history(client, run, "val/rgb/miou")[5] == reports[1]["val/rgb/miou"]
    predictor = assert_logged_weights(tmp_path, run, checkpoint_weights(tmp_path, config, 1),
                                      checkpoint_weights(tmp_path, config, 4))
    assert history(client, run, "test/miou") == {5: pytest.approx(evaluate(predictor, small_synthetic, "test")["miou"],
                                                                   abs=1e-6)}


@pytest.mark.parametrize("recipe", ["fusionlab", "reference"])
def test_best_test_selects_on_the_test_split_and_says_so(small_synthetic, tmp_path, recipe):
    # the reference recipe selects best_test itself, and scores (per epoch and in the logged model) bicubically
    train = {"epochs": 3, **({"selection": "best_test"} if recipe == "fusionlab" else {})}
    config = parse_config({**config_tree(small_synthetic, train=train), "recipe": recipe})
    assert config.train.selection == "best_test"
    reports = run_local(config, tmp_path)
    assert all("test/miou" in r and not any(key.startswith("val/") for key in r) for r in reports)

    client, run = the_run(tmp_path)
    assert run.data.tags["fusionlab.selection"] == "best_test"
    assert run.data.tags["fusionlab.selection_split"] == "test"
    per_epoch = [reports[epoch]["test/miou"] for epoch in range(3)]
    best = per_epoch.index(max(per_epoch))
    assert history(client, run, "selected_epoch") == {3: best}
    assert history(client, run, "test/miou") == {**dict(enumerate(per_epoch)), 3: per_epoch[best]}
    assert not any(key.startswith("val/") for key in run.data.metrics)
    # the per-epoch evaluation ran on test: the logged model scores on test what the selected epoch logged
    predictor = load_model(f"runs:/{run.info.run_id}/model", default_tracking_uri(tmp_path))
    assert evaluate(predictor, small_synthetic, "test")["miou"] == pytest.approx(per_epoch[best], abs=1e-6)
    assert run.data.metrics["test/miou"] == per_epoch[best]


@pytest.mark.parametrize("crash_at", [2, 3], ids=["checkpoint-of-the-best-epoch", "checkpoint-after-it"])
def test_a_resumed_run_keeps_the_best_epoch_it_had_seen(small_synthetic, tmp_path, monkeypatch, crash_at):
    scores = {0: 0.2, 1: 0.9, 2: 0.5, 3: 0.3, 4: 0.4}
    # one checkpoint kept besides the latest: the selected epoch's, which outranks the others
    config = parse_config(config_tree(small_synthetic, train={"epochs": 5, "keep_checkpoints": 1}))
    scripted_validation(monkeypatch, scores, crash_at=crash_at)
    with pytest.raises(Killed):
        run_local(config, tmp_path)
    root = tmp_path / "checkpoints" / config.run_name()
    assert sorted(path.name for path in root.glob("epoch_*")) == ["epoch_0001", f"epoch_{crash_at - 1:04d}"][
        :1 if crash_at == 2 else 2]
    saved = load_checkpoint(root / f"epoch_{crash_at - 1:04d}")
    assert saved["selection"]["epoch"] == 1
    assert saved["selection"]["model"] is None, "the kept weights are stored once: in epoch 1's own checkpoint"

    scripted_validation(monkeypatch, scores)
    reports = run_local(config, tmp_path)
    assert [r["epoch"] for r in reports] == list(range(crash_at, 5)), "resumed, not restarted"
    client, run = the_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert history(client, run, "selected_epoch") == {5: 1} and history(client, run, "val/miou")[5] == 0.9
    assert_logged_weights(tmp_path, run, checkpoint_weights(tmp_path, config, 1),
                          checkpoint_weights(tmp_path, config, 4))


def test_last_keeps_the_last_epoch_as_before(small_synthetic, tmp_path, monkeypatch):
    scripted_validation(monkeypatch, {0: 0.2, 1: 0.9, 2: 0.5})
    config = parse_config(config_tree(small_synthetic, train={"epochs": 3, "selection": "last",
                                                                     "keep_checkpoints": 3}))
    run_local(config, tmp_path)
    client, run = the_run(tmp_path)
    assert run.data.tags["fusionlab.selection"] == "last" and run.data.tags["fusionlab.selection_split"] == "none"
    assert history(client, run, "val/miou") == {0: 0.2, 1: 0.9, 2: 0.5}, "nothing logged again"
    assert history(client, run, "selected_epoch") == {2: 2}
    predictor = assert_logged_weights(tmp_path, run, checkpoint_weights(tmp_path, config, 2),
                                      checkpoint_weights(tmp_path, config, 1))
    assert history(client, run, "test/miou") == {2: pytest.approx(evaluate(predictor, small_synthetic, "test")["miou"],
                                                                   abs=1e-6)}


def test_translation_keeps_the_lowest_val_fid_and_scores_test_with_that_generator(tmp_path, monkeypatch):
    from fusionlab.data.synthetic_translation import write_synthetic_translation
    from fusionlab.train import translation_task

    data = tmp_path / "data"
    write_synthetic_translation(data, train=8, val=4, test=4, size=(32, 32), seed=0)
    epoch_of = {}
    real_lr, real_evaluate = translation_task.set_epoch_lr, translation_task.evaluate_translation

    def set_epoch_lr(optimizer, train, epoch):
        epoch_of["now"] = epoch
        return real_lr(optimizer, train, epoch)

    def evaluate_translation(*args, **kwargs):
        metrics, examples = real_evaluate(*args, **kwargs)
        if kwargs.get("prefix") == "val":  # the per-epoch evaluation, not the final test scores
            metrics["val/fid"] = {0: 9.0, 1: 5.0, 2: 7.0}[epoch_of["now"]]
        return metrics, examples

    monkeypatch.setattr(translation_task, "set_epoch_lr", set_epoch_lr)
    monkeypatch.setattr(translation_task, "evaluate_translation", evaluate_translation)
    config = parse_config({
        "data": {"path": str(data), "modalities": ["normal", "reshading"], "scale_range": [1.0, 1.0]},
        "model": {"name": "cen", "backbone": "unet_mini"},
        "train": {"epochs": 3, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3,
                  "fid": {"features": "local", "kid_subsets": 5}},
        "tracking": {"experiment": "tests"}})
    run_local(config, tmp_path)
    client, run = the_run(tmp_path)
    assert run.data.tags["fusionlab.selection"] == "best_val"
    assert history(client, run, "selected_epoch") == {3: 1} and history(client, run, "val/fid")[3] == 5.0
    predictor = load_model(f"runs:/{run.info.run_id}/model", default_tracking_uri(tmp_path))
    logged = predictor.model.state_dict()
    for epoch, same in ((1, True), (2, False)):
        weights = checkpoint_weights(tmp_path, config, epoch)
        assert all(torch.equal(logged[key], value) for key, value in weights.items()) == same, epoch
    scores = evaluate(predictor, data, "test", features="local", kid_subsets=5)
    assert history(client, run, "test/fid") == {3: pytest.approx(scores["fid"], rel=1e-4)}
