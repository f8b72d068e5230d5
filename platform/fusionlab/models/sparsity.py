"""CEN's sparsity constraint on the exchanging norms' scaling factors, and the statistics that show it working.

An exchanging layer (``exchange.ExchangingLayer``: ``bn2`` of every CEN bottleneck, the instance norm of every
exchanging U-Net down layer) is penalised on a *portion* p of its norm's channels per modality, in disjoint blocks:
modality m penalises channels ``[m*n, (m+1)*n)`` with ``n = floor(p*C)`` (p <= 1/M; p = 1/M is the reference for
M = 2, where RGB penalises the first half and depth the second).
"""

from __future__ import annotations

import torch
from torch import nn

from .exchange import ExchangingLayer, penalised_block

__all__ = ["exchange_statistics", "exchanging_layers", "l1_penalty", "l1_proximal_step_", "overall_exchanged_fraction",
           "penalised_block", "penalised_gammas"]


def exchanging_layers(model: nn.Module) -> list[tuple[str, ExchangingLayer]]:
    """``(name, layer)`` for every layer that exchanges channels after its ``exchange_norm``."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ExchangingLayer)]


def penalised_gammas(model: nn.Module) -> list[torch.Tensor]:
    """Every penalised block of scaling factors (views into the parameters), layer by layer, modality by modality."""
    return [weight[penalised_block(weight.numel(), m, layer.portion)]
            for _, layer in exchanging_layers(model)
            for m, weight in enumerate(layer.exchange_norm.modal_weights())]


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """``sum_l sum_m |gamma_{m,l}[block_m]|``, unweighted (the model multiplies by lambda)."""
    terms = [gamma.abs().sum() for gamma in penalised_gammas(model)]
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
    for gamma in penalised_gammas(model):
        gamma.copy_(gamma.sign() * (gamma.abs() - amount).clamp(min=0))


@torch.no_grad()
def exchange_statistics(model: nn.Module) -> dict[str, torch.Tensor]:
    """Per exchanging layer, the fraction of its channels each modality exchanges (its rule's): ``{key: [M]}``.

    Keys name the exchanging norm: ``<layer module name><fusion_suffix>``, e.g. ``encoder.layer1.0.bn2`` (ResNet) or
    ``encoder.down2.norm`` (U-Net).
    """
    return {
        f"{name}{layer.fusion_suffix}": layer.exchanged().float().mean(dim=1).cpu()
        for name, layer in exchanging_layers(model)
    }


@torch.no_grad()
def overall_exchanged_fraction(model: nn.Module) -> float:
    """Fraction of all (modality, channel) pairs across the exchanging layers that are exchanged."""
    below = total = 0
    for _, layer in exchanging_layers(model):
        exchanged = layer.exchanged()
        below += int(exchanged.sum())
        total += exchanged.numel()
    return below / total if total else 0.0
