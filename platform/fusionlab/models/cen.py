"""CEN: the channel-exchanging network (Wang et al., "Deep Multimodal Fusion by Channel Exchanging", NeurIPS 2020)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

import torch
from torch import nn

from .backbone_registry import SegmentationBackbone
from .exchange import EXCHANGING_BLOCKS
from .params import CENParams, SegmenterParams, Sparsity, check_portion
from .segmenter import FusionSegmenter
from .sparsity import l1_penalty, l1_proximal_step_

SPARSITY_MODES = get_args(Sparsity)


def check_cen_params(model: str, num_modalities: int, *, threshold: float, portion: float | None,
                     l1_lambda: float, sparsity: str) -> float:
    """Validate CEN's hyperparameters (``model`` names the model in errors); returns the portion (default 1/M)."""
    if num_modalities < 2:
        raise ValueError(f"{model} needs at least 2 modalities, got {num_modalities}")
    try:
        portion = check_portion(portion, num_modalities)
    except ValueError as error:
        raise ValueError(f"{model} {error}") from None
    if sparsity not in SPARSITY_MODES:
        raise ValueError(f"{model} sparsity must be one of {SPARSITY_MODES}, got {sparsity!r}")
    if threshold < 0 or l1_lambda < 0:
        raise ValueError(f"{model} threshold and l1_lambda must be >= 0, got {threshold} and {l1_lambda}")
    return portion


class CENSparsity:
    """The sparsity half of a CEN model (segmentation or translation); needs ``l1_lambda`` and ``sparsity``."""

    l1_lambda: float
    sparsity: str

    def regularization_loss(self) -> torch.Tensor:
        if self.sparsity == "proximal":
            return next(self.parameters()).new_zeros(())
        return self.l1_lambda * l1_penalty(self)

    def after_optimizer_step(self, encoder_lr: float) -> None:
        """``sparsity="proximal"``: the L1 step ``lr * lambda`` applied to the penalised factors after each step."""
        if self.sparsity == "proximal" and self.l1_lambda > 0:
            l1_proximal_step_(self, encoder_lr * self.l1_lambda)


class ChannelExchangingNet(CENSparsity, FusionSegmenter):
    """Exchange after ``bn2`` in every bottleneck of layer1-4 (ResNet), or after the BN of the middle separable conv
    of every Xception unit (entry, middle and exit flows: the same place in the block); sparsity
    ``l1_lambda * sum |gamma|`` on a portion, in the loss or as a proximal step (``sparsity``). ``rule`` picks the
    exchanged channels (``ExchangeRule``; the ablations): ``random`` draws ``random_fraction`` of each norm's channels
    per modality from ``seed``."""

    def __init__(
        self,
        spec: SegmentationBackbone,
        num_classes: int,
        modalities: Sequence[str],
        *,
        threshold: float = CENParams.threshold,
        portion: float | None = CENParams.portion,
        l1_lambda: float = CENParams.REFERENCE_LAMBDA,
        sparsity: str = CENParams.sparsity,
        rule: str = "gamma",
        random_fraction: float | None = None,
        seed: int = 0,
        in_channels: int = 3,
        rcu_residual: str = SegmenterParams.rcu_residual,
    ):
        if len(modalities) < 2:
            raise ValueError(f"cen needs at least 2 modalities, got {list(modalities)}")
        portion = check_cen_params("cen", len(modalities), threshold=threshold, portion=portion,
                                   l1_lambda=l1_lambda, sparsity=sparsity)
        if rule == "random":
            try:
                random_fraction = check_portion(random_fraction, len(modalities), name="fraction")
            except ValueError as error:
                raise ValueError(f"cen random exchange {error}") from None
        generator = torch.Generator().manual_seed(seed)  # the random rule's channel sets, layer by layer

        def exchange_block(position, block: type[nn.Module], **kwargs) -> nn.Module:
            return EXCHANGING_BLOCKS[block](**kwargs, threshold=threshold, portion=portion, rule=rule,
                                            random_fraction=random_fraction or 0.0, generator=generator)

        super().__init__(spec, num_classes, modalities, in_channels=in_channels, block_factory=exchange_block,
                         rcu_residual=rcu_residual)
        self.threshold = threshold
        self.portion = portion
        self.l1_lambda = l1_lambda
        self.sparsity = sparsity
