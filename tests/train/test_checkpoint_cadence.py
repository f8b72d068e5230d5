"""What a run writes to shared storage: a checkpoint at the evaluation's cadence (not every epoch), uploaded in the
background where the grid says so, the selected epoch's kept by rank instead of copied into every later one."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_configs import config_tree

from fusionlab.train.checkpoint import CHECKPOINT_SCORE
from fusionlab.train.loop import checkpoint_every
from fusionlab.train.prepare import parse_config
from fusionlab.train.selection import UNRANKED
from fusionlab.tune.grid import load_grid

REPO = Path(__file__).resolve().parents[2]


def test_the_paper_grids_checkpoint_when_they_evaluate():
    grid = load_grid(REPO / "experiments" / "nyudv2_refinenet.yaml")
    for run in grid.cells_expanded():
        assert run.config.train.val_every == 5 and checkpoint_every(run.config) == 5, run.config.run_name()


def test_an_explicit_cadence_wins(small_synthetic):
    config = parse_config(config_tree(small_synthetic, train={"val_every": 5, "checkpoint_every": 2}))
    assert checkpoint_every(config) == 2
    assert checkpoint_every(parse_config(config_tree(small_synthetic))) == 1


@pytest.mark.parametrize("upload", ["sync", "async"])
def test_rank_0_uploads_its_checkpoint_under_its_epochs_name_as_configured(monkeypatch, tmp_path, small_synthetic,
                                                                           upload):
    import ray.train

    from fusionlab.train.context import RayWorkerContext

    calls = []
    monkeypatch.setattr(ray.train, "report", lambda metrics, **kwargs: calls.append((metrics, kwargs)))
    context = RayWorkerContext.__new__(RayWorkerContext)  # report needs the config only
    context.config = parse_config(config_tree(small_synthetic, resources={"checkpoint_upload": upload}))
    directory = tmp_path / "ckpt"
    directory.mkdir()
    context.report({"epoch": 4, "val/miou": 0.5}, directory, 4, 0.5)
    context.report({"epoch": 5}, None, 5, UNRANKED)
    (metrics, kwargs), (plain, plain_kwargs) = calls
    assert metrics[CHECKPOINT_SCORE] == 0.5 and kwargs["checkpoint_dir_name"] == "epoch_0004"
    assert kwargs["checkpoint_upload_mode"] == ray.train.CheckpointUploadMode[upload.upper()]
    assert kwargs["delete_local_checkpoint_after_upload"] is True
    assert CHECKPOINT_SCORE not in plain and plain_kwargs == {}


def test_the_paper_grids_upload_their_checkpoints_off_the_training_steps_path():
    for name in ("nyudv2_refinenet", "nyudv2_tokenfusion"):
        for run in load_grid(REPO / "experiments" / f"{name}.yaml").cells_expanded():
            assert run.config.resources.checkpoint_upload == "async", run.config.run_name()


def test_ray_keeps_the_best_ranked_checkpoints_and_the_latest(small_synthetic, tmp_path, stand_in_trainer):
    from fusionlab.train import driver

    config = parse_config(config_tree(small_synthetic, train={"keep_checkpoints": 1}, resources={"use_gpu": False}))
    assert driver.run_ray(config, tmp_path / "runs") == "fitted"
    kept = stand_in_trainer["run_config"].checkpoint_config
    assert (kept.num_to_keep, kept.checkpoint_score_attribute, kept.checkpoint_score_order) == (
        1, CHECKPOINT_SCORE, "max")


@pytest.mark.parametrize("lower_is_better", [False, True])
def test_only_the_selected_epoch_ranks_above_the_rest(lower_is_better):
    import torch

    from fusionlab.train.selection import Selection

    chooser = Selection("best_val", "val/score", lower_is_better)
    model = torch.nn.Linear(2, 1)
    scores = [0.5, 0.7, 0.6] if not lower_is_better else [0.5, 0.3, 0.4]
    ranks = []
    for epoch, score in enumerate(scores):
        chooser.offer(epoch, {"val/score": score}, model)
        ranks.append(chooser.checkpoint_score(epoch))
    assert ranks[1] > ranks[0] > ranks[2] == UNRANKED
    assert Selection("last", "val/score").checkpoint_score(3) > Selection("last", "val/score").checkpoint_score(2)
