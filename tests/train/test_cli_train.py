"""`fusionlab train --local` then `fusionlab evaluate` on the logged model, as a user runs them."""

import re

import pytest
import yaml
from mlflow.tracking import MlflowClient
from train_configs import config_tree

from fusionlab.cli import main
from fusionlab.tracking import default_tracking_uri, load_model
from fusionlab.train.evaluate import evaluate


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
    assert shown == round(100 * run.data.metrics["val/miou"], 2) and "single-scale" in out

    # Multi-scale with flips: the figure evaluate computes with those scales, labelled so.
    model = f"runs:/{run.info.run_id}/model"
    assert main(["--workdir", str(workdir), "evaluate", "--model", model, "--data", str(small_synthetic),
                 "--split", "val", "--scales", "0.5,1.0,1.5", "--flip"]) == 0
    out = capsys.readouterr().out
    expected = evaluate(load_model(model, default_tracking_uri(workdir)), small_synthetic, "val",
                        scales=[0.5, 1.0, 1.5], flip=True)
    assert "multi-scale 0.5,1,1.5 + flip" in " ".join(out.split())
    assert float(re.findall(r"(\d+\.\d\d)", out.split("mIoU")[-1])[-1]) == round(100 * expected["miou"], 2)
    with pytest.raises(SystemExit):
        main(["evaluate", "--model", model, "--data", str(small_synthetic), "--scales", "0.5,-1"])
    assert "argument --scales: scale -1 is out of bounds (each in (0, 4]" in capsys.readouterr().err
    assert main(["--workdir", str(workdir), "evaluate", "--model", model, "--data", str(small_synthetic),
                 "--output-stride", "8"]) == 2  # a ResNet has no output stride to change
    assert "only the Xception backbones change their output stride" in capsys.readouterr().out


def test_evaluate_an_xception_model_at_output_stride_8(small_synthetic, tmp_path, capsys):
    from fusionlab.models.segmenter import set_output_stride

    config = tmp_path / "config.yaml"
    tree = config_tree(small_synthetic, model={"backbone": "xception_mini"}, tracking={"experiment": "os8"})
    config.write_text(yaml.safe_dump(tree))
    workdir = tmp_path / "runs"
    assert main(["--workdir", str(workdir), "train", str(config), "--local", "--set", "train.epochs=1"]) == 0
    client = MlflowClient(default_tracking_uri(workdir))
    model = f"runs:/{client.search_runs([client.get_experiment_by_name('os8').experiment_id])[0].info.run_id}/model"
    capsys.readouterr()
    assert main(["--workdir", str(workdir), "evaluate", "--model", model, "--data", str(small_synthetic),
                 "--output-stride", "8"]) == 0
    out = capsys.readouterr().out
    predictor = load_model(model, default_tracking_uri(workdir))
    set_output_stride(predictor, 8)
    expected = evaluate(predictor, small_synthetic, "test")
    assert "output stride 8" in " ".join(out.split())
    assert float(re.findall(r"(\d+\.\d\d)", out.split("mIoU")[-1])[-1]) == round(100 * expected["miou"], 2)


def test_bad_config_is_reported_not_raised(small_synthetic, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_tree(small_synthetic, model={"params": {"threshold": -1}})))
    assert main(["train", str(config), "--local"]) == 1
    assert "model.params.threshold" in capsys.readouterr().out
