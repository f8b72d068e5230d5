"""Translation training in-process: the pix2pix objective learns, FID/KID and image grids reach MLflow, runs resume
with their discriminator, every translation model trains, and missing Inception weights stop a run before it starts."""

import csv
import math

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from fusionlab.cli import main
from fusionlab.config import ConfigError
from fusionlab.data import Manifest
from fusionlab.data.reader import DatasetReader
from fusionlab.data.synthetic_translation import write_synthetic_translation
from fusionlab.data.torch_dataset import ShardDataset
from fusionlab.fid.inception import INCEPTION_FILE, InceptionWeightsMissing
from fusionlab.inference.inputs import safe_id
from fusionlab.models import list_models
from fusionlab.tracking import default_tracking_uri, load_model
from fusionlab.train.checkpoint import load_checkpoint
from fusionlab.train.driver import run_local
from fusionlab.train.evaluate import evaluate
from fusionlab.train.prepare import parse_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def translation_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "synthetic-translation"
    write_synthetic_translation(out, train=16, val=8, test=8, size=(32, 32), seed=0)
    return out


pytestmark = pytest.mark.usefixtures("no_inception_file")  # tests/train/conftest.py


def translation_config(dataset, **sections):
    tree = {
        "data": {"path": str(dataset), "modalities": ["normal", "reshading"], "scale_range": [1.0, 1.0]},
        "model": {"name": "cen", "backbone": "unet_mini",
                  "params": {"lambda": 100.0, "threshold": 1e-2, "sparsity": "proximal"}},
        "train": {"epochs": 6, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3,
                  "betas": [0.5, 0.999], "weight_decay": 0.0, "fid": {"kid_subsets": 20}},
        "resources": {"num_workers": 1},
        "tracking": {"experiment": "translation-tests"},
    }
    for section, values in sections.items():
        tree[section] = {**tree.get(section, {}), **values}
    return parse_config(tree)


def the_run(workdir, config):
    client = MlflowClient(default_tracking_uri(workdir))
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], f"tags.`fusionlab.run_key` = '{config.run_name()}'")
    assert len(runs) == 1
    return client, runs[0]


def artifact_paths(client, run_id, path=None):
    found = []
    for item in client.list_artifacts(run_id, path):
        found += artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def test_cen_translation_learns_and_logs_fid_kid_and_image_grids(translation_data, tmp_path, capsys):
    config = translation_config(translation_data)
    reports = run_local(config, tmp_path)

    assert [r["epoch"] for r in reports] == list(range(6))
    assert reports[-1]["train/l1"] < 0.8 * reports[0]["train/l1"], [r["train/l1"] for r in reports]
    assert reports[-1]["val/l1"] < reports[0]["val/l1"]
    assert reports[-1]["exchange/fraction"] > 0, "the proximal L1 step zeroes penalised norm scales"
    for prefix in ("val", "val/normal", "val/reshading"):
        for metric in ("fid", "kid", "l1"):
            assert math.isfinite(reports[-1][f"{prefix}/{metric}"]), (prefix, metric)
        assert reports[-1][f"{prefix}/fid"] >= 0

    client, run = the_run(tmp_path, config)
    assert run.info.status == "FINISHED"
    assert run.data.tags["fusionlab.task"] == "translation"
    assert run.data.tags["fusionlab.fid_features"].startswith("local-"), "FID without Inception is labelled"
    assert {"test/fid", "test/kid", "test/l1", "test/normal/fid"} <= set(run.data.metrics)
    history = client.get_metric_history(run.info.run_id, "val/fid")
    assert sorted(m.step for m in history) == list(range(7)), "every epoch, and the selected one's again at step 6"
    selected = int(run.data.metrics["selected_epoch"])
    assert run.data.metrics["val/fid"] == min(r["val/fid"] for r in reports) == reports[selected]["val/fid"]

    artifacts = artifact_paths(client, run.info.run_id)
    assert {f"images/epoch_{epoch:04d}.png" for epoch in range(6)} <= set(artifacts)
    assert {"plots/translations.png", "plots/gamma_histograms.png", "plots/exchange_by_layer.png"} <= set(artifacts)
    grid = client.download_artifacts(run.info.run_id, "plots/translations.png", str(tmp_path))
    assert open(grid, "rb").read(8) == PNG_MAGIC

    predictor = load_model(f"runs:/{run.info.run_id}/model", default_tracking_uri(tmp_path))
    batch = torch.randn(2, 2, 3, 32, 32)
    images = predictor(batch)
    assert images.shape == (2, 3, 32, 32) and images.min() >= 0 and images.max() <= 1
    assert predictor.target == "rgb" and set(predictor.input_specs) == {"normal", "reshading"}

    # `fusionlab evaluate` scores the logged model as training scored the test split.
    scores = evaluate(predictor, translation_data, "test", features="local")
    assert scores["fid"] == pytest.approx(run.data.metrics["test/fid"], rel=1e-4)
    assert scores["l1"] == pytest.approx(run.data.metrics["test/l1"], rel=1e-4)
    assert scores["features"] == run.data.tags["fusionlab.fid_features"]
    assert main(["--workdir", str(tmp_path), "evaluate", "--model", f"runs:/{run.info.run_id}/model",
                 "--data", str(translation_data), "--split", "test"]) == 0
    assert f"{scores['fid']:.4g}" in capsys.readouterr().out

    # `fusionlab predict` writes each sample's generated image, from the Arrow split or from a folder of PNGs.
    out = tmp_path / "predicted"
    assert main(["--workdir", str(tmp_path), "predict", "--model", f"runs:/{run.info.run_id}/model",
                 "--input", str(translation_data), "--split", "test", "--out", str(out)]) == 0
    written = sorted((out / "images").glob("*.png"))
    assert len(written) == Manifest.load(translation_data).rows("test") == 8
    with open(out / "predictions.csv") as table:
        rows = list(csv.DictReader(table))
    assert [row["image"] for row in rows] == [f"images/{path.name}" for path in written]
    samples = list(DatasetReader(translation_data).iter_samples("test"))
    first = samples[0]
    with torch.no_grad():
        expected = predictor(ShardDataset(translation_data, "test", ["normal", "reshading"])[0]["image"][None])[0]
    generated = np.asarray(Image.open(out / "images" / f"{safe_id(first.sample_id)}.png"))
    assert generated.shape == (32, 32, 3)
    assert np.abs(generated.astype(int) - np.round(expected.permute(1, 2, 0).numpy() * 255)).max() <= 1

    folder = tmp_path / "folder"
    for name in ("normal", "reshading"):
        (folder / name).mkdir(parents=True)
        array = first.modalities[name]
        Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array).save(
            folder / name / "scene.png")
    assert main(["--workdir", str(tmp_path), "predict", "--model", f"runs:/{run.info.run_id}/model",
                 "--input", str(folder), "--out", str(tmp_path / "from-folder")]) == 0
    from_folder = np.asarray(Image.open(tmp_path / "from-folder" / "images" / "scene.png"))
    assert np.abs(from_folder.astype(int) - generated.astype(int)).max() <= 1, "same pixels, same image"


def test_a_resumed_translation_run_continues_with_its_discriminator(translation_data, tmp_path):
    first = translation_config(translation_data, train={"epochs": 2})
    run_local(first, tmp_path)
    checkpoint = load_checkpoint(sorted((tmp_path / "checkpoints" / first.run_name()).glob("epoch_*"))[-1])
    assert {"discriminator", "discriminator_optimizer"} <= set(checkpoint)
    assert checkpoint["discriminator_optimizer"]["state"], "the discriminator's Adam moments are saved"

    resumed = translation_config(translation_data, train={"epochs": 3})
    assert resumed.run_name() == first.run_name()
    reports = run_local(resumed, tmp_path)
    assert [r["epoch"] for r in reports] == [2], "only the missing epoch runs"
    client, run = the_run(tmp_path, resumed)
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss")) == [0, 1, 2]
    last = load_checkpoint(sorted((tmp_path / "checkpoints" / first.run_name()).glob("epoch_*"))[-1])
    moved = [name for name, value in last["discriminator"].items()
             if not torch.equal(value, checkpoint["discriminator"][name])]
    assert moved, "the restored discriminator kept training"


@pytest.mark.parametrize("name", list_models(task="translation"))
def test_every_translation_model_trains_and_is_tracked(translation_data, tmp_path, name):
    model = {"name": name, "params": {}}  # the base config's are CEN's
    data = {}
    if name == "unimodal":
        model["params"] = {"modality": "reshading"}
        data["modalities"] = ["reshading"]
    config = translation_config(translation_data, model=model, data=data, train={"epochs": 1})
    reports = run_local(config, tmp_path)
    assert math.isfinite(reports[-1]["val/fid"]) and math.isfinite(reports[-1]["train/loss"])
    _, run = the_run(tmp_path, config)
    assert run.info.status == "FINISHED"


def test_inception_features_without_the_file_stop_the_run_before_it_starts(translation_data, tmp_path):
    config = translation_config(translation_data, train={"fid": {"features": "inception"}})
    with pytest.raises(InceptionWeightsMissing, match=INCEPTION_FILE) as error:
        run_local(config, tmp_path)
    assert "FUSIONLAB_INCEPTION_WEIGHTS" in str(error.value)
    assert not (tmp_path / "mlflow.db").exists(), "nothing was tracked"


def test_models_and_backbones_must_suit_the_datasets_task(translation_data, small_synthetic):
    with pytest.raises(ConfigError, match=r"model\.backbone: 'resnet_mini' is not a translation backbone"):
        translation_config(translation_data, model={"backbone": "resnet_mini"})
    with pytest.raises(ConfigError, match=r"model\.name: 'late_fusion' is not a translation model"):
        translation_config(translation_data, model={"name": "late_fusion"})
    tree = {"data": {"path": str(small_synthetic)}, "model": {"name": "attention", "backbone": "resnet_mini"}}
    with pytest.raises(ConfigError, match=r"model\.name: 'attention' is not a segmentation model"):
        parse_config(tree)
    assert Manifest.load(translation_data).task == "translation"


def test_a_translation_search_must_rank_by_a_translation_metric(translation_data):
    search = {"space": {"model.params.lambda": {"type": "loguniform", "low": 1.0, "high": 100.0}}}
    with pytest.raises(ConfigError, match=r"search\.metric: 'val/miou' is not logged by translation runs.*val/fid"):
        translation_config(translation_data, search=search)
    config = translation_config(translation_data, search={**search, "metric": "val/fid", "mode": "min"})
    assert config.search.metric == "val/fid" and config.search.mode == "min"


def test_the_discriminator_follows_the_decoders_stage_schedule(translation_data):
    from fusionlab.train.translation_task import discriminator_lr

    staged = translation_config(translation_data, train={"epochs": 4, "lr_decoder": [1e-3, 5e-4],
                                                         "gan": {"lr_discriminator": 4e-4}})
    assert [discriminator_lr(staged, epoch) for epoch in range(4)] == pytest.approx([4e-4, 4e-4, 2e-4, 2e-4])
    frozen_decoder = translation_config(translation_data, train={"lr_decoder": [0.0, 1e-3]})
    assert discriminator_lr(frozen_decoder, 0) == frozen_decoder.train.gan.lr_discriminator
