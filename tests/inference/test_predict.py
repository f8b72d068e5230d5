"""`fusionlab predict`: a model trained for one epoch, run on an Arrow dataset and on a folder of images."""

import copy
import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient
from PIL import Image

from fusionlab.cli import main
from fusionlab.data import DatasetError, DatasetReader
from fusionlab.data.synthetic import write_synthetic
from fusionlab.data.torch_dataset import ShardDataset
from fusionlab.inference import open_inputs, palette, predict
from fusionlab.tracking import default_tracking_uri, load_model
from fusionlab.train.driver import run_local
from fusionlab.train.prepare import parse_config

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny RGB-D dataset (48x64: not a multiple of 32) and a model trained on it for one epoch, logged."""
    root = tmp_path_factory.mktemp("predict")
    data, workdir = root / "data", root / "runs"
    write_synthetic(data, train=4, val=2, test=2, size=(48, 64), seed=0)
    run_local(parse_config({
        "data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [48, 64]},
        "model": {"name": "cen", "backbone": "resnet_mini"},
        "train": {"epochs": 1, "batch_size": 4, "optimizer": "adam"},
        "resources": {"num_workers": 1},
        "tracking": {"experiment": "tests"},
    }), workdir)
    uri = default_tracking_uri(workdir)
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("tests").experiment_id])[0]
    model_uri = f"runs:/{run.info.run_id}/model"
    return {"data": data, "workdir": workdir, "uri": uri, "model_uri": model_uri,
            "predictor": load_model(model_uri, uri)}


@pytest.fixture(scope="module")
def varied(trained):
    """The logged model with its classifier redrawn: one epoch leaves its argmax nearly constant, which would make
    comparing label maps weak. Same class, same specs and classes; only the weights differ."""
    predictor = copy.deepcopy(trained["predictor"])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in predictor.model.decoder.classifier.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return predictor


def expected_labels(predictor, images: torch.Tensor) -> np.ndarray:
    """The model's own argmax on ``[B, M, 3, H, W]``, computed from the underlying network's ensemble."""
    with torch.no_grad():
        ensemble = predictor.model(images.transpose(0, 1)).ensemble
        return F.interpolate(ensemble, size=images.shape[-2:], mode="bilinear").argmax(1).numpy()


def read_label(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "P"
        return np.asarray(image)


def write_folder(data: Path, split: str, out: Path) -> list[str]:
    """The split's decoded arrays as PNGs: rgb 8-bit RGB, depth 16-bit grey; returns the stems."""
    stems = []
    for sample in DatasetReader(data).iter_samples(split):
        for name, array in sample.modalities.items():
            (out / name).mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)  # uint16 depth: 16-bit PNG
            image.save(out / name / f"{sample.sample_id}.png")
        stems.append(sample.sample_id)
    return stems


@pytest.fixture(scope="module")
def arrow_prediction(trained, varied, tmp_path_factory):
    out = tmp_path_factory.mktemp("arrow") / "out"
    summary = predict(varied, open_inputs(trained["data"], varied, "test"), out)
    return out, summary


def test_arrow_labels_are_the_models_argmax_as_palette_pngs(trained, varied, arrow_prediction):
    out, summary = arrow_prediction
    predictor = varied
    dataset = ShardDataset(trained["data"], "test", predictor.modalities)
    ids = dataset.table.column("sample_id").to_pylist()
    expected = expected_labels(predictor, torch.stack([dataset[i]["image"] for i in range(len(dataset))]))
    assert len(np.unique(expected)) >= 3  # a constant prediction would make the comparisons below weak
    for sample_id, want in zip(ids, expected, strict=True):
        label = read_label(out / "labels" / f"{sample_id}.png")
        assert label.shape == (48, 64)
        np.testing.assert_array_equal(label, want)
        with Image.open(out / "labels" / f"{sample_id}.png") as image:
            assert image.getpalette()[:3 * 7] == palette(7).flatten().tolist()[:3 * 7]
        with Image.open(out / "overlays" / f"{sample_id}.png") as overlay:
            assert (overlay.mode, overlay.size) == ("RGB", (64, 48))
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert [row["id"] for row in rows] == ids
    for row, want in zip(rows, expected, strict=True):
        assert (row["height"], row["width"]) == ("48", "64")
        assert row["source"].startswith("test-")
        fractions = [float(row[f"fraction_{name}"]) for name in predictor.classes]
        assert sum(fractions) == pytest.approx(1, abs=1e-4)
        assert fractions == pytest.approx(np.bincount(want.ravel(), minlength=7) / want.size, abs=1e-6)
        assert row["dominant_class"] == predictor.classes[int(np.argmax(fractions))]
    assert summary.samples == 2 and summary.pixel_counts.sum() == 2 * 48 * 64
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dir left behind


def test_folder_of_images_gives_the_same_labels_as_the_dataset(trained, varied, arrow_prediction, tmp_path):
    arrow_out, _ = arrow_prediction
    stems = write_folder(trained["data"], "test", tmp_path / "images")
    out = tmp_path / "out"
    predict(varied, open_inputs(tmp_path / "images", varied), out)
    for stem in stems:
        np.testing.assert_array_equal(read_label(out / "labels" / f"{stem}.png"),
                                      read_label(arrow_out / "labels" / f"{stem}.png"))
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert rows[0]["source"] == f"{tmp_path}/images/rgb/{stems[0]}.png;{tmp_path}/images/depth/{stems[0]}.png"


def test_folder_images_of_any_size_are_predicted_at_their_size(trained, varied, tmp_path):
    predictor = varied
    sample = next(DatasetReader(trained["data"]).iter_samples("val"))
    for name, array in sample.modalities.items():
        (tmp_path / "images" / name).mkdir(parents=True)
        crop = array[:37, :50, 0] if array.shape[2] == 1 else array[:37, :50]
        Image.fromarray(crop).save(tmp_path / "images" / name / "odd.png")
    inputs = open_inputs(tmp_path / "images", predictor)
    image = next(inputs.batches(1)).images
    assert image.shape == (1, 2, 3, 37, 50)
    predict(predictor, inputs, tmp_path / "out")
    np.testing.assert_array_equal(read_label(tmp_path / "out" / "labels" / "odd.png"),
                                  expected_labels(predictor, image)[0])


def _rgbd_folder(root: Path, stems=("0001", "0002"), size=(40, 48)) -> Path:
    for stem in stems:
        (root / "rgb").mkdir(parents=True, exist_ok=True)
        (root / "depth").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((*size, 3), np.uint8)).save(root / "rgb" / f"{stem}.png")
        Image.fromarray(np.full(size, 1500, np.uint16)).save(root / "depth" / f"{stem}.png")
    return root


def _drop_depth(root):
    (root / "depth" / "0002.png").unlink()


def _no_depth_folder(root):
    for path in (root / "depth").iterdir():
        path.unlink()
    (root / "depth").rmdir()


def _depth_8bit(root):
    Image.fromarray(np.full((40, 48), 15, np.uint8)).save(root / "depth" / "0002.png")


def _depth_size(root):
    Image.fromarray(np.full((40, 40), 1500, np.uint16)).save(root / "depth" / "0001.png")


def _rgb_gray_jpg(root):
    (root / "rgb" / "0002.png").unlink()
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(root / "rgb" / "0002.jpg")


@pytest.mark.parametrize("damage, named, says", [
    (_drop_depth, "rgb/0002.png", "no matching depth image"),
    (_no_depth_folder, "/depth", "no such folder"),
    (_depth_8bit, "depth/0002.png", "expects uint16 with 1 channel"),
    (_depth_size, "depth/0001.png", "differ in size"),
    (_rgb_gray_jpg, "rgb/0002.jpg", "expects uint8 with 3 channel"),
])
def test_bad_folders_are_errors_naming_the_file(trained, tmp_path, damage, named, says):
    root = _rgbd_folder(tmp_path / "images")
    damage(root)
    with pytest.raises(DatasetError, match=says) as error:
        open_inputs(root, trained["predictor"])
    assert named in str(error.value)


def test_a_failure_while_predicting_leaves_no_output(trained, tmp_path):
    root = _rgbd_folder(tmp_path / "images")
    inputs = open_inputs(root, trained["predictor"])
    (root / "depth" / "0002.png").write_bytes(b"not a png any more")
    with pytest.raises(DatasetError, match="0002.png: unreadable"):
        predict(trained["predictor"], inputs, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_cli_predicts_a_registered_model_on_every_split(trained, tmp_path, capsys):
    import mlflow

    mlflow.set_tracking_uri(trained["uri"])
    version = mlflow.register_model(trained["model_uri"], "predict-tests")
    MlflowClient(trained["uri"]).set_registered_model_alias("predict-tests", "champion", version.version)
    out = tmp_path / "out"
    base = ["--workdir", str(trained["workdir"]), "predict", "--model", "models:/predict-tests@champion",
            "--input", str(trained["data"]), "--out", str(out)]
    assert main(base) == 0
    printed = capsys.readouterr().out
    assert "predicted 8 samples" in printed and "share of predicted pixels" in printed
    assert len(list((out / "labels").iterdir())) == 8  # 4 train, 2 val, 2 test
    ids = [row["id"] for row in csv.DictReader(open(out / "predictions.csv"))]
    assert sorted(ids) == ["test-00000", "test-00001", "train-00000", "train-00001", "train-00002", "train-00003",
                           "val-00000", "val-00001"]

    assert main(base + ["--split", "val"]) == 1
    assert "not empty" in capsys.readouterr().out and len(list((out / "labels").iterdir())) == 8
    assert main(base + ["--split", "val", "--overwrite"]) == 0  # an earlier predict output is replaced
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["val-00000.png", "val-00001.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_cli_refuses_to_overwrite_other_files_and_reports_bad_input(trained, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    base = ["--workdir", str(trained["workdir"]), "predict", "--model", trained["model_uri"], "--out", str(out)]
    assert main(base + ["--input", str(trained["data"]), "--overwrite"]) == 1
    assert "not a predict output (notes.txt)" in capsys.readouterr().out
    assert (out / "notes.txt").read_text() == "mine"

    root = _rgbd_folder(tmp_path / "images")
    _depth_8bit(root)
    assert main(base[:-1] + [str(tmp_path / "new"), "--input", str(root)]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("error:") and "depth/0002.png" in printed.replace("\n", "")
    assert not (tmp_path / "new").exists()
