"""CEN's sparsity constraint on BN scaling factors, and the statistics that show it working.

Each exchanging BN (``bn2`` of every CEN bottleneck) is penalised on a *portion* p of its channels per modality, in
disjoint blocks: modality m penalises channels ``[m*n, (m+1)*n)`` with ``n = floor(p*C)`` (p <= 1/M; p = 1/M is the
reference for M = 2, where RGB penalises the first half and depth the second).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .exchange import ExchangeBottleneck, exchanged_fraction


def penalised_block(channels: int, modality: int, portion: float) -> slice:
    size = math.floor(portion * channels + 1e-9)
    return slice(modality * size, (modality + 1) * size)


def exchanging_blocks(model: nn.Module) -> list[tuple[str, ExchangeBottleneck]]:
    """``(name, block)`` for every block that exchanges channels after its ``bn2``."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ExchangeBottleneck)]


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """``sum_l sum_m |gamma_{m,l}[block_m]|``, unweighted (the model multiplies by lambda)."""
    terms = []
    for _, block in exchanging_blocks(model):
        for m, bn in enumerate(block.bn2.bns):
            terms.append(bn.weight[penalised_block(bn.num_features, m, block.portion)].abs().sum())
    if not terms:
        return next(model.parameters()).new_zeros(())
    return torch.stack(terms).sum()


@torch.no_grad()
def l1_proximal_step_(model: nn.Module, amount: float) -> None:
    """Soft-threshold the penalised scaling factors in place: ``gamma <- sign(gamma) * max(|gamma| - amount, 0)``.

    The proximal operator of ``amount * |gamma|``: after an SGD step of rate ``lr`` it equals the L1 subgradient step
    with ``amount = lr * lambda`` (except that it stops at exactly 0 instead of crossing it). Adaptive optimisers
    rescale a penalty's gradient per parameter, so with Adam an L1 term in the loss shrinks every factor at about
    the learning rate whatever lambda is, and never makes one exactly 0; this decoupled step does (as AdamW does for
    weight decay).
    """
    for _, block in exchanging_blocks(model):
        for m, bn in enumerate(block.bn2.bns):
            gamma = bn.weight[penalised_block(bn.num_features, m, block.portion)]
            gamma.copy_(gamma.sign() * (gamma.abs() - amount).clamp(min=0))


@torch.no_grad()
def exchange_statistics(model: nn.Module) -> dict[str, torch.Tensor]:
    """Per exchanging layer, the fraction of channels below the threshold for each modality: ``{name: [M]}``."""
    return {
        f"{name}.bn2": exchanged_fraction(block.bn2.gammas(), block.threshold).cpu()
        for name, block in exchanging_blocks(model)
    }


@torch.no_grad()
def overall_exchanged_fraction(model: nn.Module) -> float:
    """Fraction of all (modality, channel) pairs across the exchanging layers that are exchanged."""
    below = total = 0
    for _, block in exchanging_blocks(model):
        gammas = block.bn2.gammas()
        below += int((gammas.abs() < block.threshold).sum())
        total += gammas.numel()
    return below / total if total else 0.0
