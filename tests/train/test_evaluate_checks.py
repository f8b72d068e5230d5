"""`evaluate` scores a model only on a dataset it can read: the classes it predicts, its inputs stored as it was
trained on them (the check `predict` makes)."""

import json
import shutil

import pytest

from fusionlab.data import DatasetError, Manifest
from fusionlab.data.synthetic import write_synthetic
from fusionlab.inference.servable import servable
from fusionlab.models import build
from fusionlab.train.evaluate import evaluate


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "clean"
    write_synthetic(out, train=2, val=2, test=2, size=(32, 40), seed=0)
    return out


@pytest.fixture(scope="module")
def predictor(clean):
    """An untrained model as it is logged for the clean dataset: its classes and input specs."""
    manifest = Manifest.load(clean)
    model = build("cen", backbone="resnet_mini", num_classes=manifest.label.num_classes, modalities=["rgb", "depth"])
    return servable(model, manifest)


def edited(clean, tmp_path, edit):
    data = shutil.copytree(clean, tmp_path / "data")
    manifest = json.loads((data / "manifest.json").read_text())
    edit(manifest)
    (data / "manifest.json").write_text(json.dumps(manifest))
    return data


def test_the_clean_dataset_is_scored(clean, predictor):
    assert 0.0 <= evaluate(predictor, clean, "test")["miou"] <= 1.0


def test_another_class_count_is_refused_naming_both_counts(clean, tmp_path, predictor):
    data = edited(clean, tmp_path, lambda m: m["label"]["classes"].append("extra"))
    count = predictor.num_classes
    with pytest.raises(DatasetError, match=f"the dataset has {count + 1} classes, the model predicts {count}"):
        evaluate(predictor, data, "test")


def test_another_depth_scale_is_refused_as_predict_refuses_it(clean, tmp_path, predictor):
    data = edited(clean, tmp_path, lambda m: m["modalities"]["depth"].update(scale=1 / 1000))
    with pytest.raises(DatasetError, match="modality 'depth' is uint16 x1 \\(scale 0.001.*trained on uint16 x1 "
                                           "\\(scale 0.0002"):
        evaluate(predictor, data, "test")
