"""One copy of a split per node (data/node_cache.py): written once, by whichever process asks first, and memory-mapped
by every process, its rows never copied onto a process's heap."""

from __future__ import annotations

import multiprocessing

import pyarrow as pa
import pytest
import torch

from fusionlab.data.node_cache import shared_split
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
