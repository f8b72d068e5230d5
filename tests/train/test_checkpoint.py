"""A checkpoint that cannot be read is a CheckpointError naming its file, never a raw torch traceback."""

import pytest
import torch

from fusionlab.errors import FusionlabError
from fusionlab.train.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint, save_checkpoint


def damaged(tmp_path, how):
    path = save_checkpoint(tmp_path / "epoch_0001", {"model": {"w": torch.ones(64, 64)}, "epoch": 1})
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"not a checkpoint at all\n" * 40)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "not-a-dict":
        torch.save([torch.ones(2)], path)
    elif how == "missing":
        path.unlink()
    return path


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "not-a-dict", "missing"])
def test_a_damaged_checkpoint_is_named(tmp_path, how):
    path = damaged(tmp_path, how)
    with pytest.raises(CheckpointError, match=str(path.parent) if how == "missing" else str(path)) as caught:
        load_checkpoint(path.parent)
    assert isinstance(caught.value, FusionlabError)  # the CLI prints it; Ray does not retry it


def test_a_sound_checkpoint_loads(tmp_path):
    save_checkpoint(tmp_path, {"epoch": 3, "model": {"w": torch.zeros(2)}})
    state = load_checkpoint(tmp_path)
    assert state["epoch"] == 3 and (tmp_path / CHECKPOINT_FILE).is_file()
