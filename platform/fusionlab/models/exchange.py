"""CEN channel exchanging (Wang et al., NeurIPS 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .modal import mean_of_others, split_modalities
from .resnet import Bottleneck


def channel_exchange(x: torch.Tensor, gammas: torch.Tensor, threshold: float) -> torch.Tensor:
    """Replace each modality's channels whose BN scaling factor is small by the other modalities' mean.

    ``x`` is the stacked BN output ``[M*B, C, H, W]``, ``gammas`` the BN scaling factors ``[M, C]``. Channel c of
    modality m keeps its own value where ``|gamma[m, c]| >= threshold`` and otherwise takes the mean of that channel
    over the other modalities (for M = 2, the other modality's value: the reference rule). A hard mask, in training
    and eval alike; gradients flow to whichever modality's value was used.
    """
    num_modalities, channels = gammas.shape
    v = split_modalities(x, num_modalities)
    keep = (gammas.detach().abs() >= threshold).view(num_modalities, 1, channels, 1, 1)
    return torch.where(keep, v, mean_of_others(v)).flatten(0, 1)


def exchanged_fraction(gammas: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per modality, the fraction of channels replaced by the exchange: ``[M]``."""
    return (gammas.detach().abs() < threshold).float().mean(dim=1)


class ExchangingLayer:
    """Mixin for a layer that channel-exchanges the output of a per-modality norm: what sparsity.py works on.

    ``exchange_norm`` is that norm (``gammas()`` ``[M, C]``, ``modal_weights()``), ``threshold`` and ``portion`` the
    exchange rule and the penalised fraction, ``fusion_suffix`` the norm's path under the layer (statistics keys are
    ``<layer module name><fusion_suffix>``).
    """

    is_fusion_point = True
    fusion_suffix: str
    threshold: float
    portion: float

    @property
    def exchange_norm(self) -> nn.Module:
        raise NotImplementedError


class ExchangeBottleneck(Bottleneck, ExchangingLayer):
    """A bottleneck whose ``bn2`` output is channel-exchanged across modalities before its ReLU."""

    is_fusion_point = True
    fusion_suffix = ".bn2"

    def __init__(self, *args, threshold: float, portion: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.threshold = threshold
        self.portion = portion  # fraction of bn2's channels each modality penalises (see sparsity.py)

    @property
    def exchange_norm(self) -> nn.Module:
        return self.bn2

    def middle(self, out: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(out))
        return F.relu(channel_exchange(out, self.bn2.gammas(), self.threshold))
