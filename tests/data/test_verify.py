"""Training reads only what the manifest vouches for: shards verified before the first epoch, shard paths confined to
the dataset directory, labels checked against the classes as they are decoded."""

import json
import os
import shutil
import sys

import pytest
from damage import edit_manifest, first_shard, flip_bytes, set_label_pixel
from mlflow.tracking import MlflowClient

from fusionlab.data import DatasetError, DatasetReader, Manifest, decode_row
from fusionlab.data import verify as verify_module
from fusionlab.data.synthetic import write_synthetic
from fusionlab.data.torch_dataset import ShardDataset
from fusionlab.data.verify import VERIFIED_TAG, trust_verification, verification_record, verify_for_training
from fusionlab.tracking import default_tracking_uri
from fusionlab.train.driver import run_local
from fusionlab.train.prepare import parse_config

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """4/2/2 synthetic RGB-D scenes at 32x40, one shard per split; never modified."""
    out = tmp_path_factory.mktemp("verify") / "clean"
    write_synthetic(out, train=4, val=2, test=2, size=(32, 40), seed=0)
    return out


@pytest.fixture
def data(clean, tmp_path):
    return shutil.copytree(clean, tmp_path / "data")


def tiny_config(data):
    return parse_config({
        "data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [32, 40]},
        "model": {"name": "cen", "backbone": "resnet_mini"},
        "train": {"epochs": 1, "batch_size": 2, "optimizer": "adam"},
        "resources": {"num_workers": 1},
        "tracking": {"experiment": "tests"},
    })


def wrong_sha(data):
    edit_manifest(data, lambda m: m["splits"]["train"][0].update(sha256="0" * 64))


def wrong_rows(data):
    edit_manifest(data, lambda m: m["splits"]["train"][0].update(rows=5))


def wrong_size(data):
    edit_manifest(data, lambda m: m["splits"]["train"][0].update(bytes=m["splits"]["train"][0]["bytes"] + 1))


@pytest.mark.parametrize(("damage", "says"), [
    (lambda data: flip_bytes(first_shard(data, "train")), "checksum mismatch"),
    (wrong_sha, "checksum mismatch"),
    (wrong_rows, "4 rows, the manifest says 5"),
    (wrong_size, "bytes, the manifest says"),
], ids=["64-flipped-bytes", "wrong-sha256", "wrong-row-count", "wrong-size"])
def test_a_damaged_shard_refuses_to_train_before_anything_is_tracked(data, tmp_path, damage, says):
    damage(data)
    with pytest.raises(DatasetError, match="train-00000.parquet") as error:
        run_local(tiny_config(data), tmp_path / "runs")
    assert says in str(error.value)
    assert not (tmp_path / "runs" / "checkpoints").exists() and not (tmp_path / "runs" / "mlruns").exists()


def test_the_ray_path_refuses_a_damaged_shard_on_the_driver_before_ray_starts(data, tmp_path, monkeypatch):
    from fusionlab.train import driver

    monkeypatch.setattr(driver, "ensure_ray", lambda *args: pytest.fail("Ray started for a damaged dataset"))
    flip_bytes(first_shard(data, "val"))
    with pytest.raises(DatasetError, match="val-00000.parquet: checksum mismatch"):
        driver.run_ray(tiny_config(data), tmp_path / "runs")
    assert not (tmp_path / "runs" / "mlruns").exists()


def test_a_trained_run_records_that_its_data_was_verified(data, tmp_path):
    run_local(tiny_config(data), tmp_path)
    client = MlflowClient(default_tracking_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.data.tags[VERIFIED_TAG].startswith("sizes, row counts and sha256 of 3 shards")
    assert run.data.tags["fusionlab.manifest_sha256"] == Manifest.load(data).digest


def test_verification_is_reused_only_while_the_files_are_unchanged(data, monkeypatch):
    hashed = []
    real = verify_module.DatasetReader.verify
    monkeypatch.setattr(verify_module.DatasetReader, "verify", lambda self, **kw: hashed.append(1) or real(self, **kw))
    verify_for_training(data)
    verify_for_training(data)
    assert len(hashed) == 1  # the second call (payload_for, or the next cell of a local grid) is a cache hit
    flip_bytes(first_shard(data, "val"))
    with pytest.raises(DatasetError, match="val-00000.parquet: checksum mismatch"):
        verify_for_training(data)


def test_a_trial_trusts_its_launchs_verification_while_the_files_are_unchanged(data, monkeypatch):
    """A grid's cells are trials in fresh processes, maybe on other nodes: they take the launch's record instead of
    hashing the dataset again per cell (NYUDv2 is ~1.5 GB over NFS), and hash it themselves once it changed."""
    record = verification_record(data)
    assert json.loads(json.dumps(record)) == record, "it travels to the trials as a Tune parameter"
    monkeypatch.setattr(verify_module, "_verified", {})  # a trial's fresh process
    hashed = []
    real = verify_module.DatasetReader.verify
    monkeypatch.setattr(verify_module.DatasetReader, "verify", lambda self, **kw: hashed.append(1) or real(self, **kw))
    trust_verification(record)
    assert verify_for_training(data).endswith("(at the launch, before this trial)") and hashed == []
    flip_bytes(first_shard(data, "val"))  # the files changed after the launch
    with pytest.raises(DatasetError, match="checksum mismatch"):
        verify_for_training(data)
    assert hashed == [1]


def test_remote_storage_is_not_verified_and_says_so():
    assert verify_for_training("s3://bucket/nyudv2").startswith("skipped: s3:// storage")


class Opened:
    """Paths opened after ``arm()`` (a Python audit hook: it sees every open, however it is made)."""

    def __init__(self):
        self.paths, self.armed = [], False
        sys.addaudithook(self._hook)  # hooks cannot be removed: this one records only while armed

    def _hook(self, event, args):
        if self.armed and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            self.paths.append(os.fsdecode(args[0]))

    def arm(self):
        self.armed = True


@pytest.fixture
def opened():
    watch = Opened()
    yield watch
    watch.armed = False


def escape_with_dots(data, outside):
    edit_manifest(data, lambda m: m["splits"]["train"][0].update(file=os.path.relpath(outside, data)))
    return os.path.relpath(outside, data)


def escape_absolute(data, outside):
    edit_manifest(data, lambda m: m["splits"]["train"][0].update(file=str(outside)))
    return str(outside)


def escape_by_symlink(data, outside):
    (data / "link").symlink_to(outside.parent, target_is_directory=True)
    edit_manifest(data, lambda m: m["splits"]["train"][0].update(file=f"link/{outside.name}"))
    return f"link/{outside.name}"


@pytest.mark.parametrize(("escape", "says"), [
    (escape_with_dots, "contains '..'"),
    (escape_absolute, "is an absolute path"),
    (escape_by_symlink, "outside the dataset directory"),
], ids=["dot-dot", "absolute", "symlinked-directory"])
def test_a_shard_path_outside_the_dataset_is_refused_and_never_opened(data, tmp_path, opened, escape, says):
    outside = tmp_path / "other" / "train-00000.parquet"
    outside.parent.mkdir()
    shutil.copy(first_shard(data, "train"), outside)  # a valid shard: only its place is wrong
    entry = escape(data, outside)
    opened.arm()
    for read in (DatasetReader, lambda root: ShardDataset(root, "train"), verify_for_training):
        with pytest.raises(DatasetError, match="manifest.json: split 'train' shard file") as error:
            read(data)
        assert entry in str(error.value) and says in str(error.value)
    assert opened.paths and not [p for p in opened.paths if p.endswith(str(outside)) or p.endswith(entry)]


def test_a_shard_symlinked_inside_the_dataset_is_read(data):
    shard = first_shard(data, "train")
    (data / "store").mkdir()
    shard.rename(data / "store" / shard.name)
    shard.symlink_to(data / "store" / shard.name)
    assert len(ShardDataset(data, "train")) == 4


def row_of(root, split, index=0):
    return DatasetReader(root).read_table(split).slice(index, 1).to_pylist()[0]


def test_decoding_refuses_a_label_that_is_neither_a_class_nor_ignored(data):
    manifest = Manifest.load(data)
    classes = manifest.label.num_classes
    sample_id = set_label_pixel(data, "train", classes)
    with pytest.raises(DatasetError) as error:
        decode_row(row_of(data, "train"), manifest, where="shard train-00000.parquet")
    message = str(error.value)
    assert f"shard train-00000.parquet, sample {sample_id!r}" in message
    assert f"label value(s) {classes} in 1 pixel(s)" in message and f"{classes} classes" in message


def test_the_ignore_index_and_every_class_index_decode(data):
    manifest = Manifest.load(data)
    set_label_pixel(data, "train", manifest.label.ignore_index)
    label = decode_row(row_of(data, "train"), manifest).label
    assert label[0, 0] == manifest.label.ignore_index
    set_label_pixel(data, "train", manifest.label.num_classes - 1)
    assert decode_row(row_of(data, "train"), manifest).label[0, 0] == manifest.label.num_classes - 1


def test_the_torch_dataset_names_the_shard_of_a_bad_label(data):
    sample_id = set_label_pixel(data, "val", 200, row=1)
    dataset = ShardDataset(data, "val")
    dataset[0]
    with pytest.raises(DatasetError, match=f"shard val-00000.parquet, sample '{sample_id}'.*label value"):
        dataset[1]


@pytest.mark.parametrize("split", ["train", "val"])
def test_training_refuses_an_out_of_range_label(data, tmp_path, split):
    classes = Manifest.load(data).label.num_classes
    sample_id = set_label_pixel(data, split, classes + 3)
    with pytest.raises(DatasetError, match=f"shard {split}-00000.parquet, sample '{sample_id}'") as error:
        run_local(tiny_config(data), tmp_path)
    assert f"label value(s) {classes + 3}" in str(error.value) and f"{classes} classes" in str(error.value)


def test_inspect_verify_decodes_every_label(data):
    reader = DatasetReader(data)
    reader.verify()
    set_label_pixel(data, "test", 250, row=1)
    with pytest.raises(DatasetError, match="shard test-00000.parquet, sample .* label value"):
        DatasetReader(data).verify()
    DatasetReader(data).verify(labels=False)  # what training checks up front: shards only


def test_the_ray_dataset_names_the_shard_of_a_bad_label(data, ray_local):
    from fusionlab.data.ray_dataset import ray_split_dataset

    sample_id = set_label_pixel(data, "val", 99)
    # raised as itself (Ray's RayTaskError(DatasetError), the original as .cause), not Ray Data's UserCodeException
    with pytest.raises(DatasetError) as error:
        ray_split_dataset(data, "val").take_all()
    assert f"shard val-00000.parquet, sample '{sample_id}': label value(s) 99" in str(error.value.cause)
