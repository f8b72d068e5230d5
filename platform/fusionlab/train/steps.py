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


@torch.no_grad()
def scoring_model(model: nn.Module) -> nn.Module:
    """The module evaluation runs its forwards on: the bare model, holding rank 0's buffers on every worker.

    Workers score parts of the split that differ in length (by one image; a worker has none where there are more
    workers than images), so they run different numbers of forwards, and a forward of DDP can be a collective:
    with ``broadcast_buffers`` (Ray's ``prepare_model`` default) ``DistributedDataParallel._pre_forward`` broadcasts
    rank 0's buffers (BN running statistics) whenever ``require_forward_param_sync`` is set, which a grad-enabled
    forward sets and a no-grad one clears (torch 2.13, ``nn/parallel/distributed.py``). Evaluation mode does not
    matter, so the first evaluation forward after training broadcasts: a worker with no batch would skip it and
    pair rank 0's broadcast with its next collective, the confusion matrices' all-reduce. So the buffers are
    broadcast here, once on every worker (what that first forward did: evaluation still sees rank 0's statistics,
    which its checkpoint saves), and the forwards run on the bare module, which starts no collective. Under
    ``train.compile`` the evaluation forwards run uncompiled."""
    ddp = getattr(model, "_orig_mod", model)
    if isinstance(ddp, nn.parallel.DistributedDataParallel) and ddp.broadcast_buffers:
        broadcast_buffers(ddp.module, ddp.process_group)
    return unwrap(model)


def broadcast_buffers(module: nn.Module, group=None) -> None:
    """``module``'s buffers set to the group's rank 0's, one broadcast per dtype and device."""
    import torch.distributed as dist

    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for buffer in module.buffers():
        groups.setdefault((buffer.dtype, buffer.device), []).append(buffer)
    source = dist.get_global_rank(group, 0) if group is not None else 0
    for buffers in groups.values():
        flat = torch.cat([buffer.reshape(-1) for buffer in buffers])
        dist.broadcast(flat, source, group=group)
        for buffer, part in zip(buffers, flat.split([buffer.numel() for buffer in buffers]), strict=True):
            buffer.copy_(part.view_as(buffer))


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
