"""One copy of a split per node (data/node_cache.py): written once, by whichever process asks first, and memory-mapped
by every process, its rows never copied onto a process's heap; removed once unused for KEEP_DAYS."""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from fusionlab.data.node_cache import DAY_S, KEEP_DAYS, buffers_in_mapping, mapped_table, prune, shared_split
from fusionlab.data.reader import DatasetReader
from fusionlab.data.synthetic import write_synthetic
from fusionlab.data.torch_dataset import ShardDataset
from fusionlab.data.transforms import Augment


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "synthetic"
    write_synthetic(out, train=16, val=4, test=4, size=(48, 64), seed=0)
    return out


def open_shared(data, cache, start, results):
    start.wait()  # every process asks at once: one writes, the others wait for it
    before = pa.total_allocated_bytes()
    dataset = ShardDataset(data, "train", cache_dir=cache)
    results.put((str(dataset.mapped), pa.total_allocated_bytes() - before, dataset.table.nbytes,
                 dataset.table.column("sample_id").to_pylist()))


def test_the_processes_of_a_node_share_one_mapped_copy_of_a_split(data, tmp_path):
    cache = tmp_path / "cache"
    fork = multiprocessing.get_context("fork")
    start, results = fork.Barrier(3), fork.Queue()
    processes = [fork.Process(target=open_shared, args=(data, cache, start, results)) for _ in range(3)]
    for process in processes:
        process.start()
    reports = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    files = sorted(path.name for path in cache.iterdir() if path.suffix == ".arrow")
    assert len(files) == 1, "one copy of the split on the node"
    assert not [path for path in cache.iterdir() if path.suffix == ".tmp"], "no staged file left behind"
    assert {mapped for mapped, *_ in reports} == {str(cache / files[0])}
    ids = DatasetReader(data).read_table("train").column("sample_id").to_pylist()
    for _, allocated, nbytes, rows in reports:
        assert rows == ids, "the split's rows in the shards' order"
        assert allocated < nbytes / 20, f"{allocated} bytes allocated for a {nbytes}-byte split: not mapped"


def test_the_shared_copy_decodes_as_the_shards(data, tmp_path):
    augment = Augment(crop=(32, 32))
    shards = ShardDataset(data, ["train", "val"], augment=augment, seed=4)
    before = pa.total_allocated_bytes()
    shared = ShardDataset(data, ["train", "val"], augment=augment, seed=4, cache_dir=tmp_path)
    assert pa.total_allocated_bytes() - before < shared.table.nbytes / 20
    assert len(shared) == len(shards) == 20
    assert shared.shard_names == shards.shard_names and list(shared.shard_ends) == list(shards.shard_ends)
    for item in (0, 7, (3, 19), (0, 19)):
        a, b = shards[item], shared[item]
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_another_split_or_dataset_gets_its_own_copy(data, tmp_path):
    reader = DatasetReader(data)
    train, val = shared_split(reader, "train", tmp_path), shared_split(reader, "val", tmp_path)
    assert train != val and shared_split(reader, "train", tmp_path) == train
    other = tmp_path / "other"
    write_synthetic(other, train=16, val=4, test=4, size=(48, 64), seed=1)
    assert shared_split(DatasetReader(other), "train", tmp_path) not in (train, val)


def test_a_mapped_copy_is_read_zero_copy_and_the_parquet_shards_are_not(data, tmp_path):
    reader = DatasetReader(data)
    path = shared_split(reader, "train", tmp_path)
    assert buffers_in_mapping(mapped_table(path), path), "every buffer in the file's mapping: nothing on the heap"
    shard = reader.shard_paths("train")[0]
    assert not buffers_in_mapping(pq.read_table(shard, memory_map=True), shard), "Parquet pages decompressed"



def age(path: pathlib.Path, days: float) -> pathlib.Path:
    """``path`` (made empty if missing) last modified ``days`` ago."""
    if not path.exists():
        path.write_bytes(b"")
    when = time.time() - days * DAY_S
    os.utime(path, (when, when))
    return path


def old_copy(cache: pathlib.Path, name: str, days: float) -> pathlib.Path:
    """A copy named as ``cache_name`` names them, of a dataset long gone."""
    return age(cache / f"{name}-{name[0] * 32}.arrow", days)


def test_every_use_of_a_copy_marks_it_used(data, tmp_path):
    reader = DatasetReader(data)
    path = shared_split(reader, "train", tmp_path)
    age(path, KEEP_DAYS + 1)
    assert shared_split(reader, "train", tmp_path) == path
    assert time.time() - path.stat().st_mtime < DAY_S, "found, not written: its mtime is now"


def test_writing_a_copy_removes_those_unused_for_keep_days(data, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = old_copy(cache, "a-train", KEEP_DAYS + 1)
    stale_lock = age(stale.with_suffix(".lock"), KEEP_DAYS + 30)
    recent = old_copy(cache, "b-train", KEEP_DAYS - 1)
    recent_lock = age(recent.with_suffix(".lock"), KEEP_DAYS + 30)  # a lock's age is its copy's
    orphan_lock = age(cache / f"c-train-{'c' * 32}.lock", KEEP_DAYS + 1)  # a write that never finished
    killed = age(cache / f".{stale.name}.x1y2z3.tmp", 2)
    staging = age(cache / f".{recent.name}.a1b2c3.tmp", 0.5)
    foreign = age(cache / "notes.arrow", 100)  # not a name this module writes
    written = shared_split(DatasetReader(data), "train", cache)
    left = set(cache.iterdir())
    assert not {stale, stale_lock, orphan_lock, killed} & left, "unused for KEEP_DAYS, staged over a day ago"
    assert {written, written.with_suffix(".lock"), recent, recent_lock, staging, foreign} <= left


def test_reading_a_copy_removes_nothing(data, tmp_path):
    shared_split(DatasetReader(data), "train", tmp_path)
    stale = old_copy(tmp_path, "a-train", KEEP_DAYS + 1)
    shared_split(DatasetReader(data), "train", tmp_path)
    assert stale.exists(), "copies are pruned when one is written"


def test_the_copy_just_written_is_never_removed_nor_one_that_cannot_be(data, tmp_path, monkeypatch):
    written = age(shared_split(DatasetReader(data), "train", tmp_path), KEEP_DAYS + 1)
    theirs = old_copy(tmp_path, "a-train", KEEP_DAYS + 1)  # another user's: unlink is refused
    stale = old_copy(tmp_path, "b-train", KEEP_DAYS + 1)
    unlink = pathlib.Path.unlink

    def refuse_theirs(path, *args, **kwargs):
        if path.name == theirs.name:
            raise PermissionError(13, "Permission denied", str(path))
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "unlink", refuse_theirs)
    assert prune(tmp_path, keep=written) == [stale]
    assert written.exists() and theirs.exists()


def test_writing_a_copy_holds_one_row_group_of_the_split_at_a_time(tmp_path, monkeypatch):
    """The first process on a node writes the copy a row group at a time and gives the memory back: its Arrow heap
    never holds the split (a whole Cityscapes split held 1.1 GiB for a 384 MiB copy)."""
    import subprocess
    import sys

    from tiny_data import make_manifest, make_samples

    from fusionlab.data import DatasetWriter
    from fusionlab.data import writer as writer_module

    monkeypatch.setattr(writer_module, "ROW_GROUP_BYTES", 2 * 128 * 128 * 6)  # two rows a group
    root = tmp_path / "rows"
    with DatasetWriter(root, make_manifest("raw")) as writer:
        for sample in make_samples(48, size=(128, 128)):  # random pixels: zstd leaves them their size
            writer.write(sample)
    split_bytes = 48 * 128 * 128 * 6
    probe = ("import sys, pyarrow as pa\n"
             "from fusionlab.data.node_cache import shared_split\n"
             "from fusionlab.data.reader import DatasetReader\n"
             "shared_split(DatasetReader(sys.argv[1]), 'train', sys.argv[2])\n"
             "pool = pa.default_memory_pool()\n"
             "print(pool.max_memory(), pool.bytes_allocated())\n")
    result = subprocess.run([sys.executable, "-c", probe, str(root), str(tmp_path / "cache")], capture_output=True,
                            text=True, check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    peak, left = (int(value) for value in result.stdout.split())
    assert peak < split_bytes / 2, f"{peak} bytes of Arrow heap at once for a {split_bytes}-byte split"
    assert left == 0
    assert mapped_table(next((tmp_path / "cache").glob("*.arrow"))).num_rows == 48
