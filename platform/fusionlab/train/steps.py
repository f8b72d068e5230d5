"""Helpers every task's training and evaluation steps share. A leaf of train/: it imports no loop or task module."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusionlab.config import Config
from fusionlab.models import FusionModel, exchange_statistics
from fusionlab.models.sparsity import overall_exchanged_fraction

# A figure a run logs: drawn into the file it is given; None when there is nothing to draw.
Draw = Callable[[Path], "Path | None"]


@dataclass
class Evaluation:
    """One evaluation: its metrics, and what the selection keeps beside them for the final plots (``kept``: a
    confusion matrix, example predictions; tensors, numbers and strings only, as checkpoints hold them)."""

    metrics: dict[str, float]
    kept: dict[str, Any] = field(default_factory=dict)


def unwrap(model: nn.Module) -> FusionModel:
    """The bare model under ``torch.compile`` (``_orig_mod``) and DDP (``module``)."""
    model = getattr(model, "_orig_mod", model)
    return model.module if hasattr(model, "module") else model


def freeze_batchnorm(model: nn.Module) -> None:
    """BN layers in eval mode (running statistics fixed) while gamma/beta still train: the references' setting."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def autocast_dtype(config: Config, device: torch.device) -> torch.dtype | None:
    """The forward's autocast precision: ``train.amp`` off (the reference recipe) is fp32 on every device, auto is
    bf16 on CUDA only."""
    if config.train.amp == "off" or (config.train.amp == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def autocast(config: Config, device: torch.device):
    dtype = autocast_dtype(config, device)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def encoder_lr(optimizer: torch.optim.Optimizer) -> float:
    return next(group["lr"] for group in optimizer.param_groups if group.get("name") == "encoder")


def metric_safe(name: str) -> str:
    """A branch name as MLflow accepts it in a metric key (early concat's branch is ``rgb+depth``)."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", name)


def model_statistics(core: FusionModel) -> dict[str, float]:
    """The exchanged fraction (overall and per layer) and the learned ensemble's weights, logged every epoch."""
    stats: dict[str, float] = {}
    per_layer = exchange_statistics(core)
    if per_layer:
        stats["exchange/fraction"] = overall_exchanged_fraction(core)
        for layer, fractions in per_layer.items():
            stats[f"exchange/fraction/{layer}"] = float(fractions.mean())
    measured = core.exchange_fractions()  # over the epoch's forwards (TokenFusion's tokens)
    if measured:
        stats["exchange/fraction"] = sum(measured.values()) / len(measured)  # the mean over stages
        stats.update({f"exchange/fraction/{stage}": fraction for stage, fraction in measured.items()})
    weights = core.ensemble_weights()
    if weights is not None:
        for name, weight in zip(core.branch_names(), weights.tolist(), strict=True):
            stats[f"alpha/{metric_safe(name)}"] = weight
    return stats
