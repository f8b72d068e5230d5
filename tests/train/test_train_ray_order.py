"""The Ray path trains on the in-process path's order and augmentation draws: a run repeats itself, on either path."""

import pytest
import torch
from mlflow.tracking import MlflowClient
from train_configs import config_tree

from fusionlab.tracking import default_tracking_uri
from fusionlab.train.driver import run_local, run_ray
from fusionlab.train.prepare import parse_config

pytestmark = pytest.mark.slow


def ray_train_losses(config, workdir) -> list[float]:
    run_ray(config, workdir)
    client = MlflowClient(default_tracking_uri(workdir))
    (run,) = client.search_runs([client.get_experiment_by_name(config.tracking.experiment).experiment_id])
    return [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)]


def test_ray_runs_of_one_config_and_seed_log_the_same_losses_as_each_other_and_in_process(small_synthetic, tmp_path,
                                                                                       ray_local):
    # Random scale on: the losses depend on every augmentation draw as well as on the order. CPU on every machine:
    # GPU kernels need not sum in the same order twice.
    config = parse_config(config_tree(small_synthetic, data={"scale_range": [0.7, 1.4]},
                                      train={"epochs": 2, "val_every": 2, "seed": 7},
                                      resources={"use_gpu": False}, tracking={"experiment": "order"}))
    on_ray = ray_train_losses(config, tmp_path / "ray")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as Ray's one-CPU worker: float sums in another order drift apart under Adam
    try:
        in_process, again = ([report["train/loss"] for report in run_local(config, tmp_path / name)]
                             for name in ("local", "again"))
    finally:
        torch.set_num_threads(threads)
    # One Ray run, not two: it equals, to the last bit, a run that is the same every time (in process, twice), so a
    # Ray run of this config and seed repeats itself.
    assert len(in_process) == 2 and in_process == again, "the same config and seed give the same run"
    assert on_ray == in_process, "the Ray worker trained on the in-process path's batches"
