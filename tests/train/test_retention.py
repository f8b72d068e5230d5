"""Checkpoint retention: the ``train.keep_checkpoints`` best-ranked checkpoints (the selected epoch's first) and the
latest are kept (default 2, as on Ray), not every epoch's; a resumed run reads the latest."""

import socket
import subprocess

import pytest
from train_configs import config_tree

from fusionlab.data.synthetic import write_synthetic
from fusionlab.train.checkpoint import load_checkpoint, save_checkpoint
from fusionlab.train.context import LocalContext
from fusionlab.train.driver import run_local
from fusionlab.train.prepare import parse_config
from fusionlab.train.selection import UNRANKED


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("retention") / "synthetic"
    write_synthetic(out, train=8, val=4, test=4, size=(32, 40), seed=0)
    return out


def kept(root):
    return sorted(path.name for path in root.glob("epoch_*"))


@pytest.mark.parametrize("keep", [None, 1, 3])
def test_local_context_keeps_the_latest_checkpoints(tiny, tmp_path, keep):
    train = {"epochs": 5, **({"keep_checkpoints": keep} if keep else {})}
    config = parse_config(config_tree(tiny, data={"crop": [32, 40]}, train=train))
    context = LocalContext(config, tmp_path / "run", echo=False)
    for epoch in range(5):
        directory = context.new_checkpoint_dir()
        save_checkpoint(directory, {"epoch": epoch})
        context.report({"epoch": epoch}, directory, epoch, UNRANKED)  # none selected: the newest rank first
    expected = [f"epoch_{epoch:04d}" for epoch in range(5)][-(keep or 2):]
    assert kept(tmp_path / "run") == expected
    assert context.restore()["epoch"] == 4
    assert not [path for path in (tmp_path / "run").iterdir() if path.name.startswith(".")]  # nothing staged


def test_the_selected_epochs_checkpoint_is_kept_beside_the_latest(tiny, tmp_path):
    config = parse_config(config_tree(tiny, data={"crop": [32, 40]}, train={"epochs": 6, "keep_checkpoints": 1}))
    context = LocalContext(config, tmp_path / "run", echo=False)
    scores = [0.3, 0.8, UNRANKED, UNRANKED, 0.7, UNRANKED]  # epoch 1 selected, then epoch 4 second best
    for epoch, score in enumerate(scores):
        directory = context.new_checkpoint_dir()
        save_checkpoint(directory, {"epoch": epoch})
        context.report({"epoch": epoch}, directory, epoch, score)
        assert "epoch_0001" in kept(tmp_path / "run") or epoch == 0
    assert kept(tmp_path / "run") == ["epoch_0001", "epoch_0005"]
    assert context.load_kept(1)["epoch"] == 1 and context.restore()["epoch"] == 5


def test_a_checkpoint_half_written_by_a_killed_run_is_swept_by_the_next(tiny, tmp_path, capfd):
    config = parse_config(config_tree(tiny, data={"crop": [32, 40]}))
    dead = subprocess.Popen(["true"])
    dead.wait()  # a process that has exited: the owner of what it left
    root = tmp_path / "run"
    left = root / f".checkpoint.partial-{socket.gethostname()}-{dead.pid}-0badc0de"
    left.mkdir(parents=True)
    (left / "checkpoint.partial").write_bytes(b"half")
    context = LocalContext(config, root, echo=False)
    context.report({"epoch": 0}, context.new_checkpoint_dir(), 0, UNRANKED)
    assert not left.exists() and kept(root) == ["epoch_0000"]
    assert f"left by process {dead.pid} (no longer running)" in capfd.readouterr().err


@pytest.mark.slow  # two real local runs (MLflow included): ~40 s on 2 busy cores
def test_a_local_run_leaves_two_checkpoints_and_resumes_from_the_latest(tiny, tmp_path):
    tree = config_tree(tiny, data={"crop": [32, 40]}, train={"epochs": 3, "batch_size": 4})
    config = parse_config(tree)
    run_local(config, tmp_path)
    root = tmp_path / "checkpoints" / config.run_name()
    selected = load_checkpoint(root / "epoch_0002")["selection"]["epoch"]
    assert set(kept(root)) >= {f"epoch_{selected:04d}", "epoch_0002"} and len(kept(root)) <= 3
    longer = parse_config(config_tree(tiny, data={"crop": [32, 40]}, train={"epochs": 4, "batch_size": 4}))
    assert [r["epoch"] for r in run_local(longer, tmp_path)] == [3]
    selected = load_checkpoint(root / "epoch_0003")["selection"]["epoch"]
    assert set(kept(root)) >= {f"epoch_{selected:04d}", "epoch_0003"} and len(kept(root)) <= 3
