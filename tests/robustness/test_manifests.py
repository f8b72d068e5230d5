"""The manifest is a contract: a manifest.json of the wrong shape, one that lists a shard twice, or one that does not
describe its rows (image size, dtype, image bytes, split, sample ids) is refused by ``data inspect --verify`` and by
``train --local``, naming the file, the field or sample and the value; ``data synth`` refuses counts that make no
dataset; ``report`` refuses to rank runs trained on different manifests together unless ``--mixed``, as ``promote``
does. Damage is written in the real format: manifest.json edited as JSON, a shard rewritten with pyarrow and its
sha256/bytes updated in the manifest, so only the intended lie remains."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from fusionlab.data.writer import sha256_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tracking"))
from report_store import FixtureRun, scores, write_store  # noqa: E402

MANIFEST = "manifest.json"


def edit(change):
    """A damage: ``change(manifest_dict)`` edits the parsed manifest in place."""
    def damage(data: Path) -> None:
        path = data / MANIFEST
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest, indent=2))
    return damage


def write_raw(text: str):
    def damage(data: Path) -> None:
        (data / MANIFEST).write_text(text)
    return damage


def rewrite_shard(split: str, change, schema_change=None):
    """A damage: the split's first shard rewritten with ``change(rows)`` applied to its rows (a list of dicts), its
    new size and sha256 recorded in the manifest."""
    def damage(data: Path) -> None:
        manifest = json.loads((data / MANIFEST).read_text())
        entry = manifest["splits"][split][0]
        path = data / entry["file"]
        table = pq.read_table(path)
        rows = table.to_pylist()
        change(rows)
        schema = schema_change(table.schema) if schema_change else table.schema
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
        entry.update(bytes=path.stat().st_size, sha256=sha256_of(path), rows=len(rows))
        (data / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return damage


def shard_entry(split: str, index: int = 0):
    return lambda manifest: manifest["splits"][split][index]


def half_size_depth(rows: list[dict]) -> None:
    """Row 0's depth as a 16x20 image in a 32x40 row."""
    rows[0]["depth"] = np.zeros((16, 20, 1), np.uint16).tobytes()


def same_bytes_twice(data: Path) -> None:
    shutil.copy(data / "train-00000.parquet", data / "train-00001.parquet")
    edit(lambda m: m["splits"]["train"].append({**m["splits"]["train"][0], "file": "train-00001.parquet"}))(data)


def swap_train_and_val(manifest: dict) -> None:
    splits = manifest["splits"]
    splits["train"], splits["val"] = splits["val"], splits["train"]


def rename_depth_to_label(manifest: dict) -> None:
    modalities = manifest["modalities"]
    modalities["label"] = modalities.pop("depth")


def without_column(name: str):
    return lambda schema: schema.remove(schema.get_field_index(name))


def drop_column(name: str):
    def change(rows: list[dict]) -> None:
        for row in rows:
            del row[name]
    return change


def set_field(row: int, field: str, value):
    def change(rows: list[dict]) -> None:
        rows[row][field] = value
    return change


# Refused when the manifest is loaded: by every command that reads the dataset.
SCHEMA_CASES = [
    pytest.param(write_raw("[1, 2]"), ["manifest.json", "a manifest is a JSON object", "JSON array"],
                 id="top-level-list"),
    pytest.param(write_raw('"a dataset"'), ["manifest.json", "a manifest is a JSON object", "JSON string",
                                            "'a dataset'"], id="top-level-string"),
    pytest.param(write_raw('{"format": "fusionlab-arrow", "schema_version": 1, "name": "x"'), ["manifest.json",
                                                                                                "invalid JSON"],
                 id="truncated-json"),
    pytest.param(edit(lambda m: shard_entry("train")(m).update(rows="8")),
                 ["manifest.json", "splits.train[0].rows must be an integer >= 0, got '8'"], id="rows-a-string"),
    pytest.param(edit(lambda m: shard_entry("train")(m).update(rows=True)),
                 ["splits.train[0].rows must be an integer >= 0, got True"], id="rows-a-boolean"),
    pytest.param(edit(lambda m: shard_entry("train")(m).update(bytes=-1)),
                 ["splits.train[0].bytes must be an integer >= 0, got -1"], id="bytes-negative"),
    pytest.param(edit(lambda m: shard_entry("val")(m).update(sha256="abc")),
                 ["splits.val[0].sha256 must be 64 lowercase hex digits, got 'abc'"], id="sha256-not-hex"),
    pytest.param(edit(lambda m: shard_entry("val")(m).pop("sha256")), ["splits.val[0].sha256 is missing"],
                 id="sha256-missing"),
    pytest.param(edit(lambda m: m.update(name=5)), ["manifest.json", "name must be a non-empty string, got 5"],
                 id="name-a-number"),
    pytest.param(edit(lambda m: m.pop("name")), ["manifest.json", "name is missing"], id="name-missing"),
    pytest.param(edit(lambda m: m.update(task="detection")),
                 ["task must be one of ['segmentation', 'translation'], got 'detection'"], id="task-unknown"),
    pytest.param(edit(lambda m: m.update(extra=1)), ["unknown field extra"], id="unknown-field"),
    pytest.param(edit(lambda m: m.update(modalities=["rgb", "depth"])),
                 ["modalities must be a non-empty JSON object of modality specs, got ['rgb', 'depth']"],
                 id="modalities-a-list"),
    pytest.param(edit(lambda m: m["modalities"]["rgb"].update(channels="3")),
                 ["modalities.rgb.channels must be an integer >= 1, got '3'"], id="channels-a-string"),
    pytest.param(edit(lambda m: m["modalities"]["rgb"].update(channels=0)),
                 ["modalities.rgb.channels must be an integer >= 1, got 0"], id="channels-zero"),
    pytest.param(edit(lambda m: m["modalities"]["depth"].update(dtype="int8")),
                 ["modalities.depth.dtype must be one of ['uint8', 'uint16', 'float32'], got 'int8'"],
                 id="dtype-unknown"),
    pytest.param(edit(lambda m: m["modalities"]["depth"].update(scale=math.nan)),
                 ["modalities.depth.scale must be a finite number > 0, got nan"], id="scale-nan"),
    pytest.param(edit(lambda m: m["modalities"]["rgb"].update(mean=[0.5, 0.5])),
                 ["modalities.rgb.mean must be a list of 1 or 3 number(s)", "[0.5, 0.5]"], id="mean-wrong-length"),
    pytest.param(edit(lambda m: m["modalities"]["depth"].update(std=[0])),
                 ["modalities.depth.std[0] must be a finite number > 0, got 0"], id="std-zero"),
    pytest.param(edit(lambda m: m["modalities"]["depth"].update(encoding="png", dtype="float32")),
                 ["modalities.depth.encoding must be 'raw' for float32 x 1", "got 'png'"], id="png-float32"),
    pytest.param(edit(rename_depth_to_label), ["modalities must be named other than", "got 'label'"],
                 id="modality-named-label"),
    pytest.param(edit(lambda m: m["label"]["classes"].__setitem__(0, 3)),
                 ["label.classes[0] must be a non-empty string, got 3"], id="class-name-a-number"),
    pytest.param(edit(lambda m: m["label"].update(ignore_index="255")),
                 ["label.ignore_index must be an integer in [0, 255], got '255'"], id="ignore-index-a-string"),
    pytest.param(edit(lambda m: m["label"].update(dtype="float32")),
                 ["label.dtype must be one of ['uint8', 'uint16'], got 'float32'"], id="label-dtype-float"),
    pytest.param(edit(lambda m: m.update(image_size=[0, 40])), ["image_size[0] must be an integer >= 1, got 0"],
                 id="image-size-zero"),
    pytest.param(edit(lambda m: m.update(image_size="32x40")),
                 ["image_size must be null or [height, width], got '32x40'"], id="image-size-a-string"),
    pytest.param(edit(lambda m: m.update(splits={})), ["manifest.json", "splits is empty"], id="no-splits"),
    pytest.param(edit(lambda m: m["splits"].update(test=[])), ["manifest.json", "split 'test' lists no shards"],
                 id="empty-split"),
    pytest.param(edit(lambda m: m["splits"]["train"].append(dict(m["splits"]["train"][0]))),
                 ["manifest.json", "splits.train[1] lists the shard splits.train[0] lists already",
                  "'train-00000.parquet'"], id="shard-twice-in-a-split"),
    pytest.param(edit(lambda m: m["splits"]["val"].append(dict(m["splits"]["train"][0]))),
                 ["manifest.json", "splits.val[1] lists the shard splits.train[0] lists already",
                  "'train-00000.parquet'"], id="shard-in-two-splits"),
    pytest.param(same_bytes_twice, ["manifest.json", "splits.train[1] lists the shard splits.train[0] lists already",
                                    "(sha256"], id="same-shard-under-two-names"),
]

# Refused by the verification that reads the rows (``--verify``, and the driver's before training).
ROW_CASES = [
    pytest.param(edit(lambda m: m.update(image_size=[24, 32])),
                 ["test-00000.parquet", "sample 'test-00000'", "height x width 32x40",
                  "the manifest's image_size is 24x32"], id="image-size-contradicts-rows"),
    pytest.param(edit(lambda m: m["modalities"]["depth"].update(dtype="uint8")),
                 ["test-00000.parquet", "sample 'test-00000', modality 'depth'", "raw image has 2560 bytes",
                  "expected 1280 (32x40x1 uint8)"], id="depth-uint8-over-uint16-bytes"),
    pytest.param(edit(lambda m: m["modalities"]["rgb"].update(channels=1, mean=[0.5], std=[0.2])),
                 ["sample 'test-00000', modality 'rgb'", "raw image has 3840 bytes", "expected 1280 (32x40x1 uint8)"],
                 id="rgb-declared-one-channel"),
    pytest.param(rewrite_shard("train", half_size_depth),
                 ["train-00000.parquet", "sample 'train-00000', modality 'depth'", "raw image has 640 bytes",
                  "expected 2560 (32x40x1 uint16)"], id="depth-16x20-in-a-32x40-row"),
    pytest.param(edit(swap_train_and_val),
                 ["val-00000.parquet", "sample 'val-00000'", "split 'val'",
                  "the manifest lists the shard under split 'train'"], id="shard-under-another-split"),
    pytest.param(rewrite_shard("val", set_field(0, "sample_id", "test-00000")),
                 ["val-00000.parquet, sample 'test-00000'", "the sample_id is also in shard", "test-00000.parquet"],
                 id="sample-id-in-two-shards"),
    pytest.param(rewrite_shard("val", set_field(1, "height", -32)),
                 ["val-00000.parquet", "sample 'val-00001'", "height -32", "positive"], id="negative-height"),
    pytest.param(rewrite_shard("train", drop_column("depth"), without_column("depth")),
                 ["train-00000.parquet", "no column 'depth'"], id="shard-without-a-modality-column"),
]


@pytest.mark.parametrize(("damage", "fragments"), SCHEMA_CASES + ROW_CASES)
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
    case for case in SCHEMA_CASES + ROW_CASES if case.id in (
        "top-level-list", "rows-a-string", "no-splits", "shard-twice-in-a-split", "shard-in-two-splits",
        "image-size-contradicts-rows", "depth-uint8-over-uint16-bytes", "depth-16x20-in-a-32x40-row")])
def test_train_local_refuses(cli, dataset_copy, tmp_path, damage, fragments):
    damage(dataset_copy)
    cli("train", train_config(tmp_path, dataset_copy), "--local").refused(*fragments)


def test_an_intact_dataset_still_verifies_and_names_what_was_checked(cli, tiny_synthetic):
    result = cli("data", "inspect", "--verify", tiny_synthetic)
    assert result.rc == 0, result.output
    assert "verified 3 shards" in result.output and "every row's size and split" in " ".join(result.output.split())


@pytest.mark.parametrize(("argv", "fragments"), [
    pytest.param(["--train", "-3"], ["argument --train", "-3"], id="train-negative"),
    pytest.param(["--val", "-1"], ["argument --val", "-1"], id="val-negative"),
    pytest.param(["--test", "-16"], ["argument --test", "-16"], id="test-negative"),
    pytest.param(["--train", "many"], ["argument --train", "'many'"], id="train-not-a-number"),
    pytest.param(["--seed", "-1"], ["argument --seed", "-1"], id="seed-negative"),
    pytest.param(["--train", "0", "--val", "0", "--test", "0"], ["no samples to write"], id="all-zero"),
    pytest.param(["--task", "translation", "--val", "-2"], ["argument --val", "-2"], id="translation-val-negative"),
])
def test_data_synth_refuses_counts_that_make_no_dataset(cli, tmp_path, argv, fragments):
    cli("data", "synth", "--out", tmp_path / "synth", *argv).refused(*fragments)
    assert not (tmp_path / "synth").exists()


def two_manifest_runs(workdir: Path) -> None:
    """Two unimodal cells of one experiment, trained on two versions of the dataset (different manifests)."""
    write_store(workdir, "mixed", [
        FixtureRun("RGB only", "unimodal", 0, scores(0.30), modality="rgb",
                   tags={"fusionlab.manifest_sha256": "a" * 64}),
        FixtureRun("Depth only", "unimodal", 0, scores(0.40), modality="depth",
                   tags={"fusionlab.manifest_sha256": "b" * 64}),
    ])


def test_report_refuses_runs_on_two_dataset_manifests_without_mixed(cli, tmp_path):
    workdir = tmp_path / "runs"
    two_manifest_runs(workdir)
    cli("report", "--experiment", "mixed", workdir=workdir).refused(
        "experiment 'mixed'", "2 versions of the dataset", "a" * 12, "b" * 12, "--mixed")
    assert not (workdir / "reports" / "mixed").exists()
    mixed = cli("report", "--experiment", "mixed", "--mixed", workdir=workdir)
    assert mixed.rc == 0, mixed.output
    flat = " ".join(mixed.output.split())
    assert "manifest" in flat and "a" * 12 in flat and "b" * 12 in flat and "Mixed datasets (--mixed)" in flat
    markdown = (workdir / "reports" / "mixed" / "report.md").read_text()
    assert "Manifest sha256" in markdown and f"| {'a' * 12} |" in markdown
