"""CEN channel exchanging (Wang et al., NeurIPS 2020), and the rules its ablations swap in."""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import nn

from .modal import mean_of_others, split_modalities
from .resnet import Bottleneck
from .xception import XceptionBlock

# Which (modality, channel) pairs an exchanging layer replaces by the other modalities' mean:
# "gamma": |gamma| < threshold anywhere in the norm (the reference code); "penalised_gamma": the same, only inside
# the modality's penalised block (the paper's description); "random": a fixed random set of channels drawn when the
# layer is built, whatever gamma does (the "is it the gamma criterion?" control); "none": nothing (private BN only).
ExchangeRule = Literal["gamma", "penalised_gamma", "random", "none"]
EXCHANGE_RULES: tuple[str, ...] = get_args(ExchangeRule)


def penalised_block(channels: int, modality: int, portion: float) -> slice:
    """Modality m's block of a norm's channels: ``[m*n, (m+1)*n)`` with ``n = floor(portion * channels)``."""
    size = math.floor(portion * channels + 1e-9)
    return slice(modality * size, (modality + 1) * size)


def exchange_channels(x: torch.Tensor, exchanged: torch.Tensor) -> torch.Tensor:
    """Replace channel c of modality m by the other modalities' mean where ``exchanged[m, c]``.

    ``x`` is the stacked norm output ``[M*B, C, H, W]``, ``exchanged`` a bool ``[M, C]``. For M = 2 the replacement is
    the other modality's value (the reference rule). Gradients flow to whichever modality's value was used.
    """
    num_modalities, channels = exchanged.shape
    v = split_modalities(x, num_modalities)
    return torch.where(exchanged.view(num_modalities, 1, channels, 1, 1), mean_of_others(v), v).flatten(0, 1)


def channel_exchange(x: torch.Tensor, gammas: torch.Tensor, threshold: float) -> torch.Tensor:
    """The reference rule: exchange the channels whose BN scaling factor ``|gamma[m, c]| < threshold`` (``gammas``
    ``[M, C]``). A hard mask, in training and eval alike."""
    return exchange_channels(x, gammas.detach().abs() < threshold)


def exchanged_fraction(gammas: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per modality, the fraction of channels the reference rule replaces: ``[M]``."""
    return (gammas.detach().abs() < threshold).float().mean(dim=1)


def random_exchange_set(channels: int, num_modalities: int, fraction: float, generator: torch.Generator
                        ) -> torch.Tensor:
    """A fixed ``[M, C]`` bool set: ``floor(fraction * C)`` channels per modality, drawn without replacement and
    disjoint across modalities (as CEN's penalised blocks are), so ``fraction <= 1/M``."""
    order = torch.randperm(channels, generator=generator)
    size = math.floor(fraction * channels + 1e-9)
    chosen = torch.zeros(num_modalities, channels, dtype=torch.bool)
    for m in range(num_modalities):
        chosen[m, order[m * size:(m + 1) * size]] = True
    return chosen


class ExchangingLayer:
    """Mixin for a layer that channel-exchanges the output of a per-modality norm: what sparsity.py works on.

    ``exchange_norm`` is that norm (``gammas()`` ``[M, C]``, ``modal_weights()``), ``threshold`` and ``portion`` the
    exchange threshold and the penalised fraction, ``rule`` which pairs are exchanged (``ExchangeRule``),
    ``fusion_suffix`` the norm's path under the layer (statistics keys are ``<layer module name><fusion_suffix>``).
    A layer calls ``configure_exchange`` once built.
    """

    is_fusion_point = True
    fusion_suffix: str
    threshold: float
    portion: float
    rule: str = "gamma"

    @property
    def exchange_norm(self) -> nn.Module:
        raise NotImplementedError

    def configure_exchange(self, *, threshold: float, portion: float, rule: str = "gamma",
                           random_fraction: float = 0.0, generator: torch.Generator | None = None) -> None:
        if rule not in EXCHANGE_RULES:
            raise ValueError(f"exchange rule must be one of {list(EXCHANGE_RULES)}, got {rule!r}")
        self.threshold, self.portion, self.rule = threshold, portion, rule
        self.is_fusion_point = rule != "none"  # with no exchange the modalities meet only in the ensemble
        num_modalities, channels = self.exchange_norm.gammas().shape
        if rule == "random":
            # A buffer: saved with the weights, so a resumed or reloaded model exchanges the same channels.
            self.register_buffer("random_exchanged",
                                 random_exchange_set(channels, num_modalities, random_fraction, generator))
        if rule == "penalised_gamma":  # derived from the portion: built once, not saved
            inside = torch.zeros(num_modalities, channels, dtype=torch.bool)
            for m in range(num_modalities):
                inside[m, penalised_block(channels, m, portion)] = True
            self.register_buffer("penalised_mask", inside, persistent=False)

    def exchanged(self) -> torch.Tensor:
        """``[M, C]`` bool: the (modality, channel) pairs this layer exchanges now."""
        gammas = self.exchange_norm.gammas().detach()
        if self.rule == "random":
            return self.random_exchanged
        if self.rule == "none":
            return torch.zeros_like(gammas, dtype=torch.bool)
        below = gammas.abs() < self.threshold
        return below & self.penalised_mask if self.rule == "penalised_gamma" else below

    def exchange(self, out: torch.Tensor) -> torch.Tensor:
        """``out`` (the exchange norm's output) with this layer's exchanged pairs replaced."""
        return out if self.rule == "none" else exchange_channels(out, self.exchanged())


class MiddleNormExchange(ExchangingLayer):
    """Mixin for a block (ResNet ``Bottleneck``, ``XceptionBlock``) that channel-exchanges the output of its middle
    norm ``bn2`` before the activation that follows it: ``conv2 -> bn2 -> exchange -> relu`` in a bottleneck,
    ``relu -> separable conv2 -> bn2 -> exchange`` in an Xception unit."""

    is_fusion_point = True
    fusion_suffix = ".bn2"

    def __init__(self, *args, threshold: float, portion: float, rule: str = "gamma", random_fraction: float = 0.0,
                 generator: torch.Generator | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # portion: the fraction of bn2's channels each modality penalises (see sparsity.py)
        self.configure_exchange(threshold=threshold, portion=portion, rule=rule, random_fraction=random_fraction,
                                generator=generator)

    @property
    def exchange_norm(self) -> nn.Module:
        return self.bn2

    def middle(self, out: torch.Tensor) -> torch.Tensor:
        return self.activate_after(self.exchange(self.middle_norm(out)))


class ExchangeBottleneck(MiddleNormExchange, Bottleneck):
    """A bottleneck whose ``bn2`` output is channel-exchanged across modalities before its ReLU."""


class ExchangeXceptionBlock(MiddleNormExchange, XceptionBlock):
    """An Xception unit whose middle separable conv's BN output is channel-exchanged across modalities."""


EXCHANGING_BLOCKS: dict[type[nn.Module], type[MiddleNormExchange]] = {
    Bottleneck: ExchangeBottleneck, XceptionBlock: ExchangeXceptionBlock}
