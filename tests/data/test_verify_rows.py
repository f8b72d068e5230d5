"""The manifest describes its rows: the load-time schema (types, splits, shards listed once) and the row check of
``DatasetReader.verify_rows`` (every row's size, split and sample_id; the first rows of each shard decoded as the
manifest says), on both the ``--verify`` and the training paths."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from damage import edit_manifest, first_shard
from tiny_data import make_manifest, make_samples

from fusionlab.data import DatasetError, DatasetReader, DatasetWriter, Manifest
from fusionlab.data import verify as verify_module
from fusionlab.data.codec import decode
from fusionlab.data.manifest import ShardInfo, check_manifest_data
from fusionlab.data.reader import SAMPLED_ROWS
from fusionlab.data.synthetic import write_synthetic
from fusionlab.data.synthetic_translation import write_synthetic_translation
from fusionlab.data.verify import verify_for_training
from fusionlab.data.writer import sha256_of


def write(out, samples, manifest):
    with DatasetWriter(out, manifest) as writer:
        for sample in samples:
            writer.write(sample)
    return out


@pytest.fixture
def raw_dataset(tmp_path):
    """12 train rows (12x16, raw encoding) in one shard, 2 val rows."""
    samples = make_samples(14, split_of=lambda i: "train" if i < 12 else "val")
    return write(tmp_path / "raw", samples, make_manifest("raw"))


def shards(reader):
    return [(name, reader.root / shard.file) for name in sorted(reader.manifest.splits)
            for shard in reader.manifest.splits[name]]


def replace_depth(root, split, row, depth):
    """Row ``row`` of the split's first shard gets ``depth``'s raw bytes; size and sha256 updated in the manifest."""
    path = first_shard(root, split)
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[row]["depth"] = depth.tobytes()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    edit_manifest(root, lambda m: m["splits"][split][0].update(bytes=path.stat().st_size, sha256=sha256_of(path)))
    return rows[row]["sample_id"]


def test_an_intact_dataset_passes_and_its_schema_round_trips(raw_dataset):
    reader = DatasetReader(raw_dataset)
    reader.verify_rows(shards(reader))
    data = json.loads((raw_dataset / "manifest.json").read_text())
    check_manifest_data(data)
    assert Manifest.from_dict(data).digest == reader.manifest.digest


def test_image_size_is_checked_against_every_row_not_only_the_sampled_ones(raw_dataset):
    edit_manifest(raw_dataset, lambda m: m.update(image_size=[12, 20]))
    reader = DatasetReader(raw_dataset)
    with pytest.raises(DatasetError, match=r"train-00000.parquet, sample 's000': height x width 12x16, the "
                                           r"manifest's image_size is 12x20 \(12 of 12 rows differ\)"):
        reader.verify(labels=False)


def test_the_first_rows_of_each_shard_are_decoded_and_the_rest_left_to_training(raw_dataset):
    """A raw depth of the wrong length in a sampled row is refused up front; beyond the sample, when it is decoded."""
    small = np.zeros((6, 8), np.uint16)
    sample = replace_depth(raw_dataset, "train", SAMPLED_ROWS, small)  # the first row past the sample
    DatasetReader(raw_dataset).verify(labels=False)
    with pytest.raises(DatasetError, match=f"sample '{sample}', modality 'depth': raw image has 96 bytes, "
                                           r"expected 384 \(12x16x1 uint16\)"):
        list(DatasetReader(raw_dataset).iter_samples("train"))
    sample = replace_depth(raw_dataset, "train", SAMPLED_ROWS - 1, small)  # the last sampled row
    with pytest.raises(DatasetError, match=f"train-00000.parquet, sample '{sample}', modality 'depth': raw image "
                                           "has 96 bytes"):
        DatasetReader(raw_dataset).verify(labels=False)


def test_a_png_that_is_not_what_the_manifest_declares_is_named(tmp_path):
    out = write(tmp_path / "png", make_samples(3), make_manifest("png"))
    edit_manifest(out, lambda m: m["modalities"]["depth"].update(dtype="uint8"))
    with pytest.raises(DatasetError, match=r"sample 's000', modality 'depth': decoded uint16 \[12, 16, 1\], "
                                           r"expected uint8 \[12, 16, 1\]"):
        DatasetReader(out).verify(labels=False)


def test_training_verification_refuses_the_lie_and_caches_only_a_pass(raw_dataset, monkeypatch):
    monkeypatch.setattr(verify_module, "_verified", {})
    edit_manifest(raw_dataset, lambda m: m["modalities"]["depth"].update(dtype="uint8"))
    with pytest.raises(DatasetError, match=r"modality 'depth': raw image has 384 bytes, expected 192"):
        verify_for_training(raw_dataset)
    assert not verify_module._verified
    edit_manifest(raw_dataset, lambda m: m["modalities"]["depth"].update(dtype="uint16"))
    assert "describes their rows" in verify_for_training(raw_dataset)


def test_a_raw_image_whose_length_is_not_a_whole_number_of_values_is_a_dataset_error():
    with pytest.raises(DatasetError, match=r"where: raw image has 3 bytes, expected 2 \(1x1x1 uint16\)"):
        decode(b"\0\0\0", "raw", "uint16", 1, 1, 1, where="where")
    with pytest.raises(DatasetError, match="height x width -2 x 3; expected positive integers"):
        decode(b"", "raw", "uint8", 1, -2, 3, where="where")


def test_shards_listed_twice_or_empty_splits_are_refused_even_when_built_in_code():
    manifest = make_manifest()
    shard = ShardInfo("train-00000.parquet", 4, 100, "a" * 64)
    other = ShardInfo("./train-00000.parquet", 4, 100, "b" * 64)
    with pytest.raises(DatasetError, match=r"splits.val\[0\] lists the shard splits.train\[0\] lists already"):
        Manifest(**{**vars(manifest), "splits": {"train": [shard], "val": [other]}})
    with pytest.raises(DatasetError, match="split 'test' lists no shards"):
        Manifest(**{**vars(manifest), "splits": {"train": [shard], "test": []}})


def test_a_link_to_a_listed_shard_is_the_same_shard(raw_dataset):
    (raw_dataset / "alias.parquet").symlink_to("train-00000.parquet")
    edit_manifest(raw_dataset, lambda m: m["splits"]["val"].append(
        {**m["splits"]["train"][0], "file": "alias.parquet", "sha256": "1" * 64}))
    with pytest.raises(DatasetError, match=r"splits.val\[1\] \(file 'alias.parquet'\) is the shard "
                                           r"splits.train\[0\] lists already"):
        Manifest.load(raw_dataset)


def test_a_split_with_no_samples_is_left_out_by_the_writer(tmp_path):
    manifest = write_synthetic(tmp_path / "no-test", train=2, val=1, test=0, size=(16, 16))
    assert sorted(manifest.splits) == ["train", "val"]
    DatasetReader(tmp_path / "no-test").verify()


@pytest.mark.parametrize("write_dataset", [write_synthetic, write_synthetic_translation])
@pytest.mark.parametrize(("arguments", "says"), [
    ({"train": -3}, "train: a number of samples is an integer >= 0, got -3"),
    ({"test": 1.5}, "test: a number of samples is an integer >= 0, got 1.5"),
    ({"train": 0, "val": 0, "test": 0}, "no samples to write"),
    ({"seed": -1}, "seed: expected an integer >= 0, got -1"),
    ({"size": (0, 16)}, r"size: expected \(height, width\), positive integers, got \(0, 16\)"),
])
def test_the_generators_refuse_counts_that_make_no_dataset(tmp_path, write_dataset, arguments, says):
    with pytest.raises(DatasetError, match=says):
        write_dataset(tmp_path / "out", **{"train": 2, "val": 1, "test": 1, "size": (16, 16), **arguments})
    assert not (tmp_path / "out").exists()


def test_a_shard_that_holds_a_sample_twice_is_refused(raw_dataset):
    path = first_shard(raw_dataset, "val")
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[1]["sample_id"] = rows[0]["sample_id"]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    edit_manifest(raw_dataset, lambda m: m["splits"]["val"][0].update(bytes=path.stat().st_size,
                                                                        sha256=sha256_of(path)))
    with pytest.raises(DatasetError, match=f"sample '{rows[0]['sample_id']}': the sample_id is twice in this shard"):
        DatasetReader(raw_dataset).verify(labels=False)


def test_a_manifest_that_is_not_utf8_is_invalid_json(raw_dataset):
    (raw_dataset / "manifest.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(DatasetError, match="manifest.json: invalid JSON"):
        Manifest.load(raw_dataset)


def test_the_shards_a_copy_holds_are_its_own(raw_dataset, tmp_path):
    """verify_rows reads the shards it is given, each under the split it is listed in (a copy verifies alike)."""
    copy = shutil.copytree(raw_dataset, tmp_path / "copy")
    reader = DatasetReader(copy)
    reader.verify_rows(shards(reader))
    with pytest.raises(DatasetError, match="split 'train', the manifest lists the shard under split 'val'"):
        reader.verify_rows([("val", copy / "train-00000.parquet")])
