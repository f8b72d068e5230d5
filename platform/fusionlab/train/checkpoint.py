"""A checkpoint is one plain dict in one file, resumable by construction and loadable with ``weights_only=True``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fusionlab.errors import FusionlabError
from fusionlab.torch_files import TorchFileError, load_weights_only

CHECKPOINT_FILE = "checkpoint.pt"
# The key under which each checkpoint is ranked for keeping (Ray's CheckpointConfig.checkpoint_score_attribute, and
# LocalContext's own rule): Selection.checkpoint_score.
CHECKPOINT_SCORE = "checkpoint_score"


def checkpoint_name(epoch: int) -> str:
    """The directory name of ``epoch``'s checkpoint, on either path: the selected epoch's is found by it."""
    return f"epoch_{epoch:04d}"


class CheckpointError(FusionlabError):
    """A checkpoint that cannot be read (missing, truncated, corrupt, not a checkpoint): the message names the file."""


def save_checkpoint(directory: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` atomically (temp file, then rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_FILE
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)
    return path


def load_checkpoint(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"no {CHECKPOINT_FILE} in checkpoint directory {directory}")
    try:
        state = load_weights_only(path)
    except TorchFileError as error:  # RuntimeError, UnpicklingError, EOFError, OSError... by the damage
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated, corrupt or not written by fusionlab: "
                              f"{error.reason}); delete its directory to resume from an earlier checkpoint, or start "
                              f"the run under another name") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, got {type(state).__name__}")
    return state
