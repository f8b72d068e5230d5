"""Parameter counts and fusion points of the registered models, computed without allocating weights."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .registry import build


@dataclass(frozen=True)
class ModelSummary:
    name: str
    parameters: int
    branches: str
    fusion_points: list[str]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def summarize(name: str, *, backbone: str | None = None, num_classes: int, modalities: Sequence[str],
              task: str = "segmentation", **params) -> ModelSummary:
    with torch.device("meta"):
        model = build(name, backbone=backbone, num_classes=num_classes, modalities=modalities, task=task, **params)
    branches = model.branch_modalities
    return ModelSummary(name, count_parameters(model), ",".join(branches), model.fusion_points())

