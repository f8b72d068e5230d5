"""Device memory of a training step, estimated on the meta device (nothing allocated): weights, gradients, the
optimiser's state, and the activations autograd keeps for backward, which grow with the batch.

The activations are the tensors the forward pass saves for backward (``torch.autograd.graph.saved_tensors_hooks``),
each counted once, plus each BatchNorm's input (on the meta device the norms run as a copy, as when FLOPs are
counted: a real BatchNorm keeps its input for backward). Not counted: the backward pass's own temporaries, cuDNN
workspaces, the CUDA context and the allocator's fragmentation, so a device needs some headroom beyond the figure.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import torch

from .flops import COUNTED_BATCH, shape_only_norms

OPTIMIZER_STATE_COPIES = {"sgd": 1, "adam": 2, "adamw": 2}  # momentum; Adam(W)'s two moments


@dataclass(frozen=True)
class TrainingMemory:
    parameter_bytes: int  # the weights (fp32)
    activation_bytes_per_sample: int

    def total_bytes(self, batch: int, optimizer: str) -> int:
        """Weights, their gradients and the optimiser's state, plus ``batch`` samples' activations."""
        copies = 2 + OPTIMIZER_STATE_COPIES[optimizer]
        return copies * self.parameter_bytes + batch * self.activation_bytes_per_sample


class _SavedTensors:
    """The bytes of distinct tensors saved for backward; each kept referenced so that its ``id`` is not reused."""

    def __init__(self) -> None:
        self.kept: dict[int, torch.Tensor] = {}

    def note(self, tensor: torch.Tensor) -> torch.Tensor:
        if isinstance(tensor, torch.Tensor):
            self.kept.setdefault(id(tensor), tensor)
        return tensor

    @property
    def bytes(self) -> int:
        return sum(tensor.numel() * tensor.element_size() for tensor in self.kept.values())


def training_memory(model: torch.nn.Module, inputs: torch.Tensor) -> TrainingMemory:
    """The memory of ``model`` (on the meta device) training on ``inputs`` (``[M, B, C, H, W]``, meta), per sample."""
    saved = _SavedTensors()
    model.train()
    with shape_only_norms(saved.note), torch.autograd.graph.saved_tensors_hooks(saved.note, lambda tensor: tensor):
        model(inputs)
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    return TrainingMemory(parameters, saved.bytes // inputs.shape[1])


@functools.lru_cache(maxsize=64)
def sample_training_memory(name: str, backbone: str, num_classes: int, modalities: tuple[str, ...],
                           size: tuple[int, int], kwargs_json: str = "{}", task: str = "segmentation"
                           ) -> TrainingMemory:
    """``training_memory`` of the registered model ``name`` built with the JSON ``kwargs_json``, at ``size``."""
    from .registry import build

    kwargs: dict[str, Any] = json.loads(kwargs_json)
    with torch.device("meta"):
        model = build(name, backbone=backbone, num_classes=num_classes, modalities=list(modalities), task=task,
                      **kwargs)
        inputs = torch.empty(len(modalities), COUNTED_BATCH, model.in_channels, *size)
        return training_memory(model, inputs)
