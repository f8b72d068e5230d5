"""The registered models. Every one takes the same three arguments plus its own, and returns a FusionModel."""

from __future__ import annotations

from collections.abc import Sequence

from .asym import REFERENCE_SHIFT_OFFSETS, REFERENCE_SHUFFLE_GROUPS
from .asymfusion import AsymFusionNet
from .baselines import EarlyConcat, LateFusion
from .cen import ChannelExchangingNet
from .fusion import FusionModel
from .registry import register_model
from .resnet import get_backbone
from .segmenter import FusionSegmenter


@register_model
def unimodal(*, backbone: str, num_classes: int, modalities: Sequence[str], modality: str | None = None,
             in_channels: int = 3, rcu_residual: str = "pre_activation") -> FusionModel:
    """A single-modality network; it reads ``modality`` (default: the first) from the stacked input."""
    chosen = modality or modalities[0]
    return FusionSegmenter(get_backbone(backbone), num_classes, modalities, branch_modalities=[chosen],
                           in_channels=in_channels, rcu_residual=rcu_residual)


@register_model
def early_concat(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3,
                 rcu_residual: str = "pre_activation") -> FusionModel:
    return EarlyConcat(get_backbone(backbone), num_classes, modalities, in_channels=in_channels,
                       rcu_residual=rcu_residual)


@register_model
def late_fusion(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3,
                 rcu_residual: str = "pre_activation") -> FusionModel:
    return LateFusion(get_backbone(backbone), num_classes, modalities, in_channels=in_channels,
                      rcu_residual=rcu_residual)


@register_model
def shared_bn(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3,
                 rcu_residual: str = "pre_activation") -> FusionModel:
    """Shared convs *and* shared BN across modalities, alpha-ensembled: the papers' ablation."""
    return FusionSegmenter(get_backbone(backbone), num_classes, modalities, in_channels=in_channels, shared_bn=True,
                           rcu_residual=rcu_residual)


@register_model
def cen(*, backbone: str, num_classes: int, modalities: Sequence[str], threshold: float = 2e-2,
        portion: float | None = None, l1_lambda: float = 2e-4, sparsity: str = "loss",
        in_channels: int = 3, rcu_residual: str = "pre_activation") -> FusionModel:
    return ChannelExchangingNet(get_backbone(backbone), num_classes, modalities, threshold=threshold,
                                portion=portion, l1_lambda=l1_lambda, sparsity=sparsity, in_channels=in_channels,
                                rcu_residual=rcu_residual)


@register_model
def asymfusion(*, backbone: str, num_classes: int, modalities: Sequence[str],
               shuffle_groups: int = REFERENCE_SHUFFLE_GROUPS,
               shift_offsets: Sequence[Sequence[int]] = REFERENCE_SHIFT_OFFSETS, in_channels: int = 3,
               rcu_residual: str = "pre_activation") -> FusionModel:
    return AsymFusionNet(get_backbone(backbone), num_classes, modalities, shuffle_groups=shuffle_groups,
                         shift_offsets=shift_offsets, in_channels=in_channels, rcu_residual=rcu_residual)
