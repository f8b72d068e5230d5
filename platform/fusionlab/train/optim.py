"""Optimiser with the references' encoder/decoder learning-rate split and stage schedule; fused kernels on CUDA
(``train.fused``).

Each param group keeps its place in the schedule (``stage``, ``stage_step``) among its own keys, which the optimiser's
``state_dict`` saves: a resumed run continues the stage and the warm-up where its checkpoint left them."""

from __future__ import annotations

import torch
from torch import nn

from fusionlab.config import LrScheduleConfig, TrainConfig

from .device import use_fused

ENCODER_GROUPS = ("encoder", "encoder_norm")


def stage_of(lr: float | list[float], epoch: int, epochs: int) -> tuple[int, float]:
    """The stage ``epoch`` falls in and its rate: a list of rates is a piecewise-constant schedule of equal-length
    stages over the epochs; one rate is one stage."""
    if not isinstance(lr, list):
        return 0, lr
    stage = min(epoch * len(lr) // epochs, len(lr) - 1)
    return stage, lr[stage]


def stage_lr(lr: float | list[float], epoch: int, epochs: int) -> float:
    return stage_of(lr, epoch, epochs)[1]


def poly_warmup_factor(schedule: LrScheduleConfig, step: int) -> float:
    """The multiplier of a stage's rate at its ``step``-th optimiser step (``PolyWarmupAdamW.step``'s, which leaves
    the rate as it was once ``max_iters`` is reached)."""
    if step < schedule.warmup_iters:
        return 1 - (1 - step / schedule.warmup_iters) * (1 - schedule.warmup_ratio)
    if step >= schedule.max_iters:  # the rate of the last step that set one
        return poly_warmup_factor(schedule, max(schedule.max_iters, schedule.warmup_iters) - 1)
    return (1 - step / schedule.max_iters) ** schedule.power


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Encoder parameters (the backbone) and the rest (decoder, classifier, ensemble weights)."""
    encoder_ids = {id(p) for name, module in model.named_modules() if name.endswith("encoder")
                   for p in module.parameters()}
    encoder = [p for p in model.parameters() if id(p) in encoder_ids]
    rest = [p for p in model.parameters() if id(p) not in encoder_ids]
    return encoder, rest


def _param_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    encoder, rest = split_parameters(model)
    groups = [{"params": encoder, "name": "encoder"}, {"params": rest, "name": "decoder"}]
    if config.norm_weight_decay is not None:
        norm_ids = {id(p) for name, p in model.named_parameters() if "norm" in name}
        groups = [{"params": [p for p in encoder if id(p) not in norm_ids], "name": "encoder"},
                  {"params": [p for p in encoder if id(p) in norm_ids], "name": "encoder_norm",
                   "weight_decay": config.norm_weight_decay},
                  {"params": rest, "name": "decoder"}]
    return groups


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(model, config)
    fused = use_fused(config, model.parameters()) or None  # None: torch's default (foreach on CUDA)
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=0.0, momentum=config.momentum, weight_decay=config.weight_decay,
                                    fused=fused)
    elif config.optimizer == "adam":
        optimizer = torch.optim.Adam(groups, lr=0.0, betas=config.betas, weight_decay=config.weight_decay,
                                     fused=fused)
    else:  # TokenFusion's PolyWarmupAdamW is AdamW with eps 1e-8, torch's default
        optimizer = torch.optim.AdamW(groups, lr=0.0, betas=config.betas, weight_decay=config.weight_decay,
                                      fused=fused)
    set_epoch_lr(optimizer, config, 0)
    return optimizer


def set_epoch_lr(optimizer: torch.optim.Optimizer, config: TrainConfig, epoch: int) -> None:
    """Each group's rate for ``epoch``: its stage's, and on entering a new stage its step count (and, with
    ``restart_each_stage``, its parameters' optimiser state) starts afresh."""
    for group in optimizer.param_groups:
        lr = config.lr_encoder if group["name"] in ENCODER_GROUPS else config.lr_decoder
        stage, rate = stage_of(lr, epoch, config.epochs)
        if group.get("stage") != stage:
            if group.get("stage") is not None and config.restart_each_stage:
                for param in group["params"]:
                    optimizer.state.pop(param, None)
            group["stage"], group["stage_step"] = stage, 0
        group["stage_lr"] = rate
        group["lr"] = rate * _factor(config.lr_schedule, group["stage_step"])


def before_step(optimizer: torch.optim.Optimizer, config: TrainConfig) -> None:
    """Call right before every ``optimizer.step()``: the per-step part of the schedule (``stages`` keeps the rate)."""
    for group in optimizer.param_groups:
        group["lr"] = group["stage_lr"] * _factor(config.lr_schedule, group["stage_step"])
        group["stage_step"] += 1


def _factor(schedule: LrScheduleConfig, step: int) -> float:
    return 1.0 if schedule.type == "stages" else poly_warmup_factor(schedule, step)
