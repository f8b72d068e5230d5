"""Read the CEN / AsymFusion references' released checkpoints and load them into fusionlab models, strictly.

A reference checkpoint (``model-best.pth.tar``; yikaiw/CEN ``main.py``: ``Saver``, ``load_ckpt``) is a dict:
``segmenter`` -> the ``nn.DataParallel`` state dict (every key prefixed ``module.``), ``epoch_start`` (an int) and
``best_val`` (the mIoU it was kept for, often a numpy float64). It is read with ``weights_only=True``; the only
globals allowed besides tensors are the few that rebuild a numpy scalar.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionlab.errors import FusionlabError
from fusionlab.torch_files import TorchFileError, load_weights_only

from .fusion import FusionModel
from .pretrained_release import sha256_file
from .reference_names import map_reference_state
from .resnet import BackboneSpec

REFERENCE_MODELS = ("cen", "asymfusion")
PARALLEL_PREFIX = "module."  # nn.DataParallel's
_BLOCK = re.compile(r"layer([1-4])\.(\d+)\.")


class ReferenceCheckpointError(FusionlabError):
    """A file that is not a readable reference checkpoint; the message names the file and what was expected."""


def numpy_scalar_globals() -> list[Any]:
    """What unpickling a numpy float scalar needs: ``scalar`` (under numpy 1's and numpy 2's module names) and the
    float dtypes. Nothing that can run other code."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1
        from numpy.core.multiarray import scalar
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype,
            np.dtypes.Float64DType, np.dtypes.Float32DType]


@dataclass(frozen=True)
class ReferenceCheckpoint:
    path: str
    sha256: str
    state: dict[str, torch.Tensor]  # reference names, the DataParallel prefix removed
    epoch_start: int | None
    best_val: float | None

    @property
    def layers(self) -> tuple[int, ...]:
        return checkpoint_layers(self.state)


def checkpoint_layers(state: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """Bottlenecks per stage found in a reference state dict (``(3, 4, 23, 3)`` for ResNet-101)."""
    blocks: dict[int, set[int]] = {}
    for key in state:
        match = _BLOCK.match(key)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    return tuple(len(blocks.get(stage, ())) for stage in range(1, 5))


def _number(value: Any, key: str, path: str, kind: type) -> Any:
    if value is None:
        return None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return kind(value)
    raise ReferenceCheckpointError(f"{path}: {key!r} should be a number, got {type(value).__name__}")


def read_reference_checkpoint(path: str | os.PathLike) -> ReferenceCheckpoint:
    path = str(path)
    if not Path(path).is_file():
        raise ReferenceCheckpointError(f"reference checkpoint not found: {path}")
    try:
        content = load_weights_only(path, numpy_scalar_globals())
    except TorchFileError as error:  # unpickling raises many types; the reason says which
        raise ReferenceCheckpointError(f"cannot read {path} as a reference checkpoint with weights_only=True (tensors "
                                       f"and numpy scalars only): {error.reason}") from None
    if not isinstance(content, Mapping) or not isinstance(content.get("segmenter"), Mapping):
        found = sorted(content) if isinstance(content, Mapping) else type(content).__name__
        raise ReferenceCheckpointError(f"{path}: expected a dict with 'segmenter' (the state dict), 'epoch_start' "
                                       f"and 'best_val', as the references' Saver writes; found {found}")
    segmenter = content["segmenter"]
    not_tensors = [key for key, value in segmenter.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ReferenceCheckpointError(f"{path}: 'segmenter' holds non-tensors at {not_tensors[:5]}")
    parallel = bool(segmenter) and all(key.startswith(PARALLEL_PREFIX) for key in segmenter)
    state = {key.removeprefix(PARALLEL_PREFIX) if parallel else key: value for key, value in segmenter.items()}
    return ReferenceCheckpoint(path, sha256_file(path), state,
                               _number(content.get("epoch_start"), "epoch_start", path, int),
                               _number(content.get("best_val"), "best_val", path, float))


def load_reference_state(model: FusionModel, state: Mapping[str, torch.Tensor], origin: str,
                         spec: BackboneSpec | None = None) -> None:
    """Map ``state`` (reference names) onto ``model`` and load it strictly; errors name every bad key, and say
    when the checkpoint's depth differs from the backbone's."""
    try:
        mapped = map_reference_state(state, model.state_dict(), origin)
    except FusionlabError as error:
        found = checkpoint_layers(state)
        if spec is not None and found != tuple(spec.layers):
            raise type(error)(f"{error} (the checkpoint has {found} bottlenecks per stage, the backbone "
                              f"{tuple(spec.layers)})") from None
        raise
    model.load_state_dict(mapped, strict=True)
