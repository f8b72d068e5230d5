"""`fusionlab train --local` then `fusionlab evaluate` on the logged model, as a user runs them."""

import re

import yaml
from mlflow.tracking import MlflowClient
from train_configs import config_tree

from fusionlab.cli import main
from fusionlab.tracking import default_tracking_uri


def test_train_then_evaluate_the_logged_model(small_synthetic, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_tree(small_synthetic, tracking={"experiment": "cli"})))
    workdir = tmp_path / "runs"
    assert main(["--workdir", str(workdir), "train", str(config), "--local", "--set", "train.epochs=1"]) == 0
    assert re.search(r"done: val/miou \d\.\d{4}", capsys.readouterr().out)

    client = MlflowClient(default_tracking_uri(workdir))
    run = client.search_runs([client.get_experiment_by_name("cli").experiment_id])[0]
    assert main(["--workdir", str(workdir), "evaluate", "--model", f"runs:/{run.info.run_id}/model",
                 "--data", str(small_synthetic), "--split", "val"]) == 0
    out = capsys.readouterr().out
    shown = float(re.findall(r"(\d+\.\d\d)", out.split("mIoU")[-1])[-1])
    assert shown == round(100 * run.data.metrics["val/miou"], 2)


def test_bad_config_is_reported_not_raised(small_synthetic, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_tree(small_synthetic, model={"params": {"threshold": -1}})))
    assert main(["train", str(config), "--local"]) == 1
    assert "model.params.threshold" in capsys.readouterr().out
