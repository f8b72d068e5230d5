"""Multimodal image-to-image translation (Taskonomy domains -> RGB): the U-Net generator run on stacked branches.

Every conv is shared by the branches, every InstanceNorm is private per branch; the fusion variants replace the down
layers that have a norm (``encoder.down2 .. down<levels-1>``, the CEN reference's exchanging layers) by one whose
``fuse`` mixes the branches after the norm. The ensemble is ``sum_m softmax(alpha)_m * out_m.detach()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .asym import channel_shuffle, kept_channels, pixel_shift
from .cen import CENSparsity, check_cen_params
from .exchange import ExchangingLayer
from .fusion import FusionModel, FusionOutput, alpha_ensemble, fusion_point_names
from .modal import SharedConv2d, mean_of_others, split_modalities
from .params import TranslationCENParams
from .unet import DownLayer, LayerFactory, LayerPosition, UNetDecoder, UNetEncoder, UNetSpec, init_pix2pix_, plain_layer


class TranslationNet(FusionModel):
    """U-Net generator on the stacked branches; ``num_classes`` is the number of output channels (3: RGB).

    ``branch_modalities`` picks which input modalities get a branch (all by default); ``concat_inputs`` makes one
    branch ("a+b") of the modalities concatenated along channels (early fusion).
    """

    def __init__(
        self,
        spec: UNetSpec,
        num_classes: int,
        modalities: Sequence[str],
        *,
        branch_modalities: Sequence[str] | None = None,
        concat_inputs: bool = False,
        in_channels: int = 3,
        layer_factory: LayerFactory = plain_layer,
    ):
        super().__init__(modalities, num_classes, in_channels)
        branches = tuple(branch_modalities or modalities)
        unknown = [m for m in branches if m not in self.modalities]
        if unknown:
            raise ValueError(f"branch modalities {unknown} are not among the inputs {list(self.modalities)}")
        self.spec = spec
        self.concat_inputs = concat_inputs
        self.branch_index = [self.modalities.index(m) for m in branches]
        self.branch_modalities = ("+".join(branches),) if concat_inputs else branches
        num_branches = len(self.branch_modalities)
        encoder_in_channels = in_channels * len(branches) if concat_inputs else in_channels
        self.encoder = UNetEncoder(spec, num_branches, encoder_in_channels, layer_factory)
        self.decoder = UNetDecoder(spec, num_branches, num_classes)
        self.alpha = nn.Parameter(torch.ones(num_branches))
        init_pix2pix_(self)

    def check_size(self, height: int, width: int) -> None:
        divisor = 2**self.spec.levels
        if height % divisor or width % divisor:
            raise ValueError(f"{type(self).__name__}: a U-Net of {self.spec.levels} levels needs H and W divisible "
                             f"by 2**{self.spec.levels} = {divisor}, got H x W = {height} x {width}")

    def branch_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The stacked branch inputs ``[M', B, C', H, W]`` from the modalities ``[M, B, C, H, W]``."""
        if self.branch_index != list(range(len(self.modalities))):
            x = x[self.branch_index]
        return x.transpose(0, 1).flatten(1, 2).unsqueeze(0) if self.concat_inputs else x

    def forward(self, x: torch.Tensor) -> FusionOutput:
        self.check_input(x)
        self.check_size(*x.shape[-2:])
        x = self.branch_inputs(x)
        num_branches, batch = x.shape[:2]
        branches = self.decoder(self.encoder(x.flatten(0, 1))).unflatten(0, (num_branches, batch))
        return alpha_ensemble(branches, self.alpha)

    def branch_names(self) -> list[str]:
        return list(self.branch_modalities)

    def ensemble_weights(self) -> torch.Tensor:
        return F.softmax(self.alpha.detach().float(), 0)

    def fusion_points(self) -> list[str]:
        points = fusion_point_names(self)
        if self.concat_inputs:
            points = ["input (channel concatenation)"]
        elif not points and len(self.branch_modalities) > 1:
            points = ["output (alpha ensemble)"]
        return points


# The fusing down layers: each replaces ``DownLayer.fuse`` (applied to the norm's output, before the next LeakyReLU).


class ExchangeDownLayer(DownLayer, ExchangingLayer):
    """CEN: channel exchange after the instance norm (the CEN translation reference's ``ConvBlock``)."""

    is_fusion_point = True
    fusion_suffix = ".norm"

    def __init__(self, *args, threshold: float, portion: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.configure_exchange(threshold=threshold, portion=portion)

    @property
    def exchange_norm(self) -> nn.Module:
        return self.norm

    def fuse(self, out: torch.Tensor) -> torch.Tensor:
        return self.exchange(out)


class AsymDownLayer(DownLayer):
    """AsymFusion after the norm: ``shuffle(out + mean_of_others(shift(out)))``, as the segmentation block's fuse2.

    A branch keeps its first ``kept_channels(C, groups)`` channels and takes the rest from the others (cyclic), and
    receives the others' pixel-shifted kept channels (their mean; for M = 2 the other branch's), added before the
    shuffle.
    """

    is_fusion_point = True

    def __init__(self, *args, groups: int, offsets: tuple[tuple[int, int], ...], **kwargs):
        super().__init__(*args, **kwargs)
        self.groups = groups
        self.offsets = offsets

    def fuse(self, out: torch.Tensor) -> torch.Tensor:
        keep = kept_channels(out.shape[1], self.groups)
        received = mean_of_others(split_modalities(pixel_shift(out, keep, self.offsets), self.num_modalities))
        return channel_shuffle(out + received.flatten(0, 1), self.num_modalities, keep)


class AverageDownLayer(DownLayer):
    """Every branch's features replaced by their mean over the branches."""

    is_fusion_point = True

    def fuse(self, out: torch.Tensor) -> torch.Tensor:
        v = split_modalities(out, self.num_modalities)
        return v.mean(0, keepdim=True).expand_as(v).reshape(out.shape)


class AttentionDownLayer(DownLayer):
    """Per-pixel attention over the branches: a shared 1x1 conv scores each branch's features, softmax across the
    branches, and every branch receives the weighted sum."""

    is_fusion_point = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.attention = SharedConv2d(self.conv.out_channels, 1, 1, num_modalities=self.num_modalities)

    def fuse(self, out: torch.Tensor) -> torch.Tensor:
        v = split_modalities(out, self.num_modalities)
        weights = F.softmax(split_modalities(self.attention(out), self.num_modalities), dim=0)  # [M, B, 1, H, W]
        return (weights * v).sum(0, keepdim=True).expand_as(v).reshape(out.shape)


def fusing_factory(layer_class: type[DownLayer], **fusion_params) -> LayerFactory:
    """Use ``layer_class`` for the down layers that have a norm (2..levels-1), plain layers elsewhere."""

    def factory(position: LayerPosition, **kwargs) -> DownLayer:
        if position.has_norm:
            return layer_class(**kwargs, **fusion_params)
        return DownLayer(**kwargs)

    return factory


class ExchangingTranslationNet(CENSparsity, TranslationNet):
    """CEN for translation: exchange after the norm of down layers 2..levels-1, L1 sparsity on a portion of their
    gammas (reference defaults: lambda 1e-3, threshold 1e-2)."""

    def __init__(self, spec: UNetSpec, num_classes: int, modalities: Sequence[str], *,
                 threshold: float = TranslationCENParams.threshold,
                 portion: float | None = TranslationCENParams.portion,
                 l1_lambda: float = TranslationCENParams.REFERENCE_LAMBDA,
                 sparsity: str = TranslationCENParams.sparsity, in_channels: int = 3):
        portion = check_cen_params("cen", len(modalities), threshold=threshold, portion=portion,
                                   l1_lambda=l1_lambda, sparsity=sparsity)
        factory = fusing_factory(ExchangeDownLayer, threshold=threshold, portion=portion)
        super().__init__(spec, num_classes, modalities, in_channels=in_channels, layer_factory=factory)
        self.threshold = threshold
        self.portion = portion
        self.l1_lambda = l1_lambda
        self.sparsity = sparsity
