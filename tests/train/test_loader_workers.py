"""``data.num_workers``: DataLoader worker processes decode the in-process path's batches, and the batches are the
same for any number of them, in every epoch (the epoch reaches persistent workers through the sampler's items)."""

from __future__ import annotations

import pytest
import torch
from train_configs import config_tree

from fusionlab.config import ConfigError
from fusionlab.data.torch_dataset import loader_options, loader_workers
from fusionlab.train.context import LocalContext
from fusionlab.train.prepare import parse_config


def batches_of(config, tmp_path, epochs: int):
    ctx = LocalContext(config, tmp_path, echo=False)
    train = [list(ctx.train_batches(epoch)) for epoch in range(epochs)]
    val = [list(ctx.val_batches()) for _ in range(2)]
    return ctx, train, val


def same(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
                                    for x, y in zip(a, b, strict=True))


def test_the_batches_of_every_epoch_do_not_depend_on_the_number_of_loader_workers(small_synthetic, tmp_path):
    tree = config_tree(small_synthetic, data={"scale_range": [0.7, 1.4]}, train={"seed": 3, "val_batch_size": 3})
    in_process, train0, val0 = batches_of(parse_config(tree), tmp_path / "w0", epochs=2)
    assert in_process.train_loader.num_workers == 0 and in_process.val_rows.loader.num_workers == 0
    tree["data"]["num_workers"] = 2
    workers, train2, val2 = batches_of(parse_config(tree), tmp_path / "w2", epochs=2)
    assert workers.train_loader.num_workers == 2 and workers.train_loader.persistent_workers
    assert workers.val_rows.loader.num_workers == 2
    assert len(train0[0]) == 32 // 4
    assert same(train0[0], train2[0]) and same(train0[1], train2[1]), "the workers decoded the same batches"
    assert not same(train0[0], train0[1]), "each epoch has its own order and augmentation draws"
    assert same(val0[0], val2[0]) and same(val0[1], val2[1]) and same(val0[0], val0[1])


def test_the_default_uses_loader_workers_only_to_feed_a_gpu(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert loader_workers(None, torch.device("cpu")) == 0
    assert loader_workers(None, torch.device("cuda")) == 4
    assert loader_workers(3, torch.device("cpu")) == 3 and loader_workers(0, torch.device("cuda")) == 0
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert loader_workers(None, torch.device("cuda")) == 0, "two cores: the training process keeps both"
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2})
    assert loader_workers(None, torch.device("cuda")) == 2
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert loader_workers(None, torch.device("cuda"), cpus=3) == 2, "on Ray: the worker's reserved CPUs"
    assert loader_workers(None, torch.device("cuda"), cpus=1.5) == 0
    assert loader_workers(None, torch.device("cuda"), cpus=64) == 4
    assert loader_options(2, torch.device("cuda"))["pin_memory"]
    assert not loader_options(2, torch.device("cpu"))["pin_memory"]
    assert loader_options(0, torch.device("cpu")) == {"num_workers": 0, "persistent_workers": False,
                                                      "pin_memory": False}


def test_a_negative_worker_count_is_refused(small_synthetic):
    with pytest.raises(ConfigError, match=r"data\.num_workers"):
        parse_config(config_tree(small_synthetic, data={"num_workers": -1}))
