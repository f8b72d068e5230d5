"""A checkpoint is one plain dict in one file, resumable by construction and loadable with ``weights_only=True``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "checkpoint.pt"


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
        raise FileNotFoundError(f"no {CHECKPOINT_FILE} in checkpoint directory {directory}")
    return torch.load(path, map_location="cpu", weights_only=True)
