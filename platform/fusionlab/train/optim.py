"""Optimiser with the references' encoder/decoder learning-rate split and stage schedule; fused kernels on CUDA
(``train.fused``)."""

from __future__ import annotations

import torch
from torch import nn

from fusionlab.config import TrainConfig

from .device import use_fused


def stage_lr(lr: float | list[float], epoch: int, epochs: int) -> float:
    """A list of rates is a piecewise-constant schedule of equal-length stages over the epochs."""
    if not isinstance(lr, list):
        return lr
    stage = min(epoch * len(lr) // epochs, len(lr) - 1)
    return lr[stage]


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Encoder parameters (ResNet) and the rest (decoder, classifier, ensemble weights)."""
    encoder_ids = {id(p) for name, module in model.named_modules() if name.endswith("encoder")
                   for p in module.parameters()}
    encoder = [p for p in model.parameters() if id(p) in encoder_ids]
    rest = [p for p in model.parameters() if id(p) not in encoder_ids]
    return encoder, rest


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    encoder, rest = split_parameters(model)
    groups = [{"params": encoder, "name": "encoder"}, {"params": rest, "name": "decoder"}]
    fused = use_fused(config, model.parameters()) or None  # None: torch's default (foreach on CUDA)
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=0.0, momentum=config.momentum, weight_decay=config.weight_decay,
                                    fused=fused)
    else:
        optimizer = torch.optim.Adam(groups, lr=0.0, betas=config.betas, weight_decay=config.weight_decay,
                                     fused=fused)
    set_epoch_lr(optimizer, config, 0)
    return optimizer


def set_epoch_lr(optimizer: torch.optim.Optimizer, config: TrainConfig, epoch: int) -> None:
    for group in optimizer.param_groups:
        lr = config.lr_encoder if group["name"] == "encoder" else config.lr_decoder
        group["lr"] = stage_lr(lr, epoch, config.epochs)
