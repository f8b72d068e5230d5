"""Damaged datasets through the CLI: manifests whose shard paths leave the dataset, shards that differ from their
manifest entry, labels outside the classes, and datasets a model was not trained for. ``data inspect --verify``,
``train --local`` and ``evaluate`` each refuse them with the file, field or value named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from fusionlab.data import Manifest
from fusionlab.inference.servable import servable
from fusionlab.models import build


def edit_manifest(data: Path, edit) -> None:
    path = data / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=2))


def train_entry(edit):
    return lambda data: edit_manifest(data, lambda m: edit(m["splits"]["train"][0]))


def train_shard(data: Path) -> Path:
    return data / json.loads((data / "manifest.json").read_text())["splits"]["train"][0]["file"]


def flip_64_bytes(data: Path) -> None:
    shard = train_shard(data)
    content = bytearray(shard.read_bytes())
    middle = len(content) // 2
    content[middle:middle + 64] = bytes(b ^ 0xFF for b in content[middle:middle + 64])
    shard.write_bytes(bytes(content))


def not_parquet(data: Path) -> None:
    shard = train_shard(data)
    shard.write_bytes(b"x" * shard.stat().st_size)


def outside_by_dots(data: Path) -> None:
    other = data.parent / "other"
    other.mkdir()
    shutil.copy(train_shard(data), other / "train-00000.parquet")
    train_entry(lambda e: e.update(file="../other/train-00000.parquet"))(data)


def outside_by_symlink(data: Path) -> None:
    (data / "elsewhere").symlink_to("/etc", target_is_directory=True)
    train_entry(lambda e: e.update(file="elsewhere/passwd"))(data)


def fewer_classes(data: Path) -> None:
    """The manifest keeps 2 of the 7 classes: the shards' labels 2..6 are now out of range."""
    edit_manifest(data, lambda m: m["label"].update(classes=m["label"]["classes"][:2]))


MANIFEST_AND_SHARD_CASES = [
    pytest.param(outside_by_dots, ["manifest.json", "shard file '../other/train-00000.parquet'", "'..'"],
                 id="shard-path-dot-dot"),
    pytest.param(train_entry(lambda e: e.update(file="/etc/passwd")), ["shard file '/etc/passwd'", "absolute"],
                 id="shard-path-absolute"),
    pytest.param(outside_by_symlink, ["shard file 'elsewhere/passwd'", "outside the dataset directory"],
                 id="shard-path-symlink-out"),
    pytest.param(train_entry(lambda e: e.update(file=7)), ["shard file must be a non-empty relative path", "7"],
                 id="shard-path-not-a-string"),
    pytest.param(flip_64_bytes, ["train-00000.parquet", "checksum mismatch"], id="shard-64-flipped-bytes"),
    pytest.param(train_entry(lambda e: e.update(sha256="0" * 64)), ["train-00000.parquet", "checksum mismatch",
                                                                   "0" * 64], id="manifest-wrong-sha256"),
    pytest.param(train_entry(lambda e: e.update(rows=9)), ["train-00000.parquet", "8 rows, the manifest says 9"],
                 id="manifest-wrong-rows"),
    pytest.param(train_entry(lambda e: e.update(bytes=1)), ["train-00000.parquet", "the manifest says 1"],
                 id="manifest-wrong-bytes"),
    pytest.param(lambda data: train_shard(data).unlink(), ["train-00000.parquet", "missing"], id="shard-missing"),
    pytest.param(not_parquet, ["train-00000.parquet", "checksum mismatch"], id="shard-not-parquet"),
    pytest.param(fewer_classes, ["-00000.parquet, sample", "label value(s) 2", "2 classes (0..1)",
                                 "ignore index 255"], id="label-out-of-range"),
]


@pytest.mark.parametrize(("damage", "fragments"), MANIFEST_AND_SHARD_CASES)
def test_data_inspect_verify_refuses(cli, dataset_copy, damage, fragments):
    damage(dataset_copy)
    cli("data", "inspect", "--verify", dataset_copy).refused(*fragments)


def train_config(tmp_path: Path, data: Path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [32, 40]},
        "model": {"name": "cen", "backbone": "resnet_mini"},
        "train": {"epochs": 1, "batch_size": 4, "optimizer": "adam"},
        "tracking": {"experiment": "robustness"},
    }))
    return path


@pytest.mark.parametrize(("damage", "fragments"), [
    case for case in MANIFEST_AND_SHARD_CASES if case.id in (
        "shard-path-dot-dot", "shard-path-absolute", "shard-64-flipped-bytes", "manifest-wrong-rows",
        "label-out-of-range")])
def test_train_local_refuses(cli, dataset_copy, tmp_path, damage, fragments):
    damage(dataset_copy)
    cli("train", train_config(tmp_path, dataset_copy), "--local").refused(*fragments)


@pytest.fixture(scope="module")
def predictor(tiny_synthetic):
    """An untrained CEN as it is logged for the tiny dataset (its classes and input specs), loaded by any URI."""
    manifest = Manifest.load(tiny_synthetic)
    model = build("cen", backbone="resnet_mini", num_classes=manifest.label.num_classes, modalities=["rgb", "depth"])
    return servable(model, manifest)


INPUT_SPEC_CASES = [
    pytest.param(lambda m: m["modalities"]["depth"].update(scale=0.001),
                 ["modality 'depth'", "scale 0.001", "trained on uint16 x1 (scale 0.0002"], id="another-depth-scale"),
    pytest.param(lambda m: m["modalities"]["rgb"].update(channels=1, mean=[0.45], std=[0.225]),  # a valid 1-ch spec
                 ["modality 'rgb' is uint8 x1", "trained on uint8 x3"], id="another-rgb-channels"),
]


@pytest.mark.parametrize(("edit", "fragments"), [
    pytest.param(lambda m: m["label"]["classes"].append("extra"), ["has 8 classes, the model predicts 7"],
                 id="another-class-count"),
    *INPUT_SPEC_CASES,
])
def test_evaluate_refuses_a_dataset_the_model_was_not_trained_for(cli, dataset_copy, monkeypatch, predictor, edit,
                                                                  fragments):
    monkeypatch.setattr("fusionlab.tracking.load_model", lambda uri, tracking_uri=None: predictor)
    edit_manifest(dataset_copy, edit)
    cli("evaluate", "--model", "runs:/0/model", "--data", dataset_copy).refused(str(dataset_copy), *fragments)


@pytest.mark.parametrize(("edit", "fragments"), INPUT_SPEC_CASES)
def test_predict_refuses_the_same_input_specs(cli, dataset_copy, tmp_path, monkeypatch, predictor, edit, fragments):
    monkeypatch.setattr("fusionlab.tracking.load_model", lambda uri, tracking_uri=None: predictor)
    edit_manifest(dataset_copy, edit)
    cli("predict", "--model", "runs:/0/model", "--input", dataset_copy, "--out", tmp_path / "out").refused(
        str(dataset_copy), *fragments)
    assert not (tmp_path / "out").exists()
