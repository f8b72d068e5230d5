"""The sharded format: round trips, bounded shards, determinism, atomic writes, and every bad-input error."""

import hashlib
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from tiny_data import make_manifest, make_samples

from fusionlab.data import DatasetError, DatasetReader, DatasetWriter, Manifest, Sample
from fusionlab.data.manifest import MANIFEST_NAME


def write(out, samples, manifest=None, **kwargs):
    with DatasetWriter(out, manifest or make_manifest(), **kwargs) as writer:
        for sample in samples:
            writer.write(sample)
    return out


def assert_same_samples(read, written):
    assert [s.sample_id for s in read] == [s.sample_id for s in written]
    for got, want in zip(read, written, strict=True):
        assert np.array_equal(got.modalities["rgb"], want.modalities["rgb"])
        assert np.array_equal(got.modalities["depth"][:, :, 0], want.modalities["depth"])
        assert np.array_equal(got.label, want.label)


@pytest.mark.parametrize("encoding", ["png", "raw"])
def test_round_trip_is_pixel_exact(tmp_path, encoding):
    samples = make_samples(6, split_of=lambda i: ["train", "val", "test"][i % 3])
    out = write(tmp_path / "ds", samples, make_manifest(encoding))
    reader = DatasetReader(out)
    reader.verify()
    assert {split: reader.manifest.rows(split) for split in reader.manifest.splits} == {"train": 2, "val": 2,
                                                                                      "test": 2}
    for split in ("train", "val", "test"):
        assert_same_samples(list(reader.iter_samples(split)), [s for s in samples if s.split == split])
    assert reader.manifest.image_size == (12, 16)


def test_manifest_and_schema_metadata_describe_the_dataset(tiny_dataset):
    out, _ = tiny_dataset
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["schema_version"] == 1 and manifest["task"] == "segmentation"
    assert manifest["label"]["classes"] == ["floor", "wall", "box"] and manifest["label"]["ignore_index"] == 255
    assert manifest["modalities"]["depth"]["dtype"] == "uint16" and manifest["modalities"]["depth"]["unit"] == "mm"
    for shard in manifest["splits"]["train"]:
        data = (out / shard["file"]).read_bytes()
        assert shard["bytes"] == len(data) and shard["sha256"] == hashlib.sha256(data).hexdigest()
    schema = pq.read_schema(out / manifest["splits"]["train"][0]["file"])
    embedded = json.loads(schema.metadata[b"fusionlab.dataset"])
    assert embedded["name"] == "tiny" and embedded["label"]["classes"] == ["floor", "wall", "box"]
    assert set(schema.names) == {"sample_id", "split", "height", "width", "rgb", "depth", "label"}


def test_shards_are_bounded(tmp_path):
    samples = make_samples(20, size=(24, 32))
    bound = 12_000
    out = write(tmp_path / "ds", samples, max_shard_bytes=bound)
    manifest = Manifest.load(out)
    shards = manifest.splits["train"]
    assert len(shards) > 3
    assert sum(s.rows for s in shards) == 20
    per_row = max(s.bytes / s.rows for s in shards)
    assert all(s.bytes <= bound + per_row + 4096 for s in shards), "a shard holds at most the bound (+ footer)"
    assert_same_samples(list(DatasetReader(out).iter_samples("train")), samples)


def test_same_input_gives_identical_bytes(tmp_path):
    first = write(tmp_path / "a", make_samples(8, seed=3), max_shard_bytes=5_000)
    second = write(tmp_path / "b", make_samples(8, seed=3), max_shard_bytes=5_000)
    assert (first / MANIFEST_NAME).read_text() == (second / MANIFEST_NAME).read_text()
    for shard in Manifest.load(first).splits["train"]:
        assert (first / shard.file).read_bytes() == (second / shard.file).read_bytes()


def test_failed_write_leaves_nothing_behind(tmp_path):
    samples = make_samples(5)
    samples[3].label[2, 2] = 7  # outside the 3 classes
    with pytest.raises(DatasetError, match=r"sample 's003': label values \[7\] are outside the 3 classes"):
        write(tmp_path / "ds", samples, max_shard_bytes=2_000)  # earlier shards were already flushed
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    out = write(tmp_path / "ds", make_samples(2))
    before = (out / MANIFEST_NAME).read_text()
    with pytest.raises(DatasetError, match="already exists"):
        write(out, make_samples(3, seed=1))
    assert (out / MANIFEST_NAME).read_text() == before
    write(out, make_samples(3, seed=1), overwrite=True)
    assert Manifest.load(out).rows("train") == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


# -- bad input: one test per case ------------------------------------------------------------------------------

def test_missing_modality_is_named(tmp_path):
    sample = make_samples(1)[0]
    del sample.modalities["depth"]
    with pytest.raises(DatasetError, match=r"sample 's000'.*missing \['depth'\]"):
        write(tmp_path / "ds", [sample])


def test_shapes_that_disagree_are_named(tmp_path):
    sample = make_samples(1)[0]
    sample.modalities["depth"] = sample.modalities["depth"][:10]
    with pytest.raises(DatasetError, match=r"sample 's000': image sizes disagree.*rgb 12x16, depth 10x16"):
        write(tmp_path / "ds", [sample])


def test_wrong_dtype_is_named(tmp_path):
    sample = make_samples(1)[0]
    sample.modalities["depth"] = sample.modalities["depth"].astype(np.float32)
    with pytest.raises(DatasetError, match=r"modality 'depth' is float32.*expected uint16"):
        write(tmp_path / "ds", [sample])


def test_duplicate_sample_id_is_an_error(tmp_path):
    samples = make_samples(2)
    samples[1].sample_id = samples[0].sample_id
    with pytest.raises(DatasetError, match="duplicate sample_id"):
        write(tmp_path / "ds", samples)


def test_unreadable_image_names_shard_sample_and_modality(tiny_dataset):
    out, _ = tiny_dataset
    shard = out / Manifest.load(out).splits["val"][0].file
    table = pq.read_table(shard)
    rgb = table.column("rgb").to_pylist()
    rgb[1] = b"\x89PNG garbage"
    pq.write_table(table.set_column(table.schema.get_field_index("rgb"), "rgb", [rgb]), shard)
    with pytest.raises(DatasetError, match=r"shard val-00000.parquet, sample 's011', modality 'rgb': unreadable PNG"):
        list(DatasetReader(out).iter_samples("val"))


def test_checksum_mismatch_names_the_shard(tiny_dataset):
    out, _ = tiny_dataset
    shard = out / Manifest.load(out).splits["train"][0].file
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"shard .*train-00000.parquet: checksum mismatch"):
        DatasetReader(out).verify()


def test_unknown_schema_version_is_named(tiny_dataset):
    out, _ = tiny_dataset
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    manifest["schema_version"] = 99
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=r"manifest.json: unknown schema_version 99; this fusionlab reads version 1"):
        DatasetReader(out)


def test_missing_shard_and_missing_directory_are_named(tiny_dataset, tmp_path):
    out, _ = tiny_dataset
    (out / "val-00000.parquet").unlink()
    with pytest.raises(DatasetError, match="missing: .*val-00000.parquet"):
        list(DatasetReader(out).iter_samples("val"))
    with pytest.raises(DatasetError, match="dataset directory not found"):
        DatasetReader(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"has no split 'tset'; it has \['train', 'val'\]"):
        DatasetReader(out).shard_paths("tset")


def test_label_is_required_for_segmentation(tmp_path):
    sample = make_samples(1)[0]
    with pytest.raises(DatasetError, match="missing label"):
        write(tmp_path / "ds", [Sample(sample.sample_id, "train", sample.modalities, None)])


def test_row_groups_hold_at_most_row_group_bytes_of_rows(tmp_path, monkeypatch):
    """A reader decodes a row group whole: large images get fewer rows per group (never none), small ones
    ROW_GROUP_ROWS."""
    from fusionlab.data import writer as writer_module

    samples = make_samples(12, size=(32, 32))  # 32 x 32 x (3 + 2 + 1) bytes a row, raw
    row_bytes = 32 * 32 * 6
    monkeypatch.setattr(writer_module, "ROW_GROUP_BYTES", 3 * row_bytes + 100)
    out = write(tmp_path / "big", samples, make_manifest("raw"))
    groups = [meta.num_rows for shard in sorted(out.glob("*.parquet"))
              for meta in (pq.ParquetFile(shard).metadata.row_group(i)
                           for i in range(pq.ParquetFile(shard).num_row_groups))]
    assert sum(groups) == 12 and max(groups) <= 3 and min(groups) >= 1, groups
    monkeypatch.setattr(writer_module, "ROW_GROUP_BYTES", row_bytes // 2)
    one_row = write(tmp_path / "huge", samples, make_manifest("raw"))
    assert {pq.ParquetFile(shard).metadata.row_group(0).num_rows for shard in one_row.glob("*.parquet")} == {1}
    assert writer_module.row_group_rows(100, 100) == writer_module.ROW_GROUP_ROWS
