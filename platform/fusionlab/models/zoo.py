"""The registered models. Every one takes the same three arguments plus its own, and returns a FusionModel; its own
parameters' defaults are its params class's (``models/params.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from .asymfusion import AsymFusionNet
from .baselines import EarlyConcat, LateFusion
from .cen import ChannelExchangingNet
from .fusion import FusionModel
from .params import AsymFusionParams, CENParams, SegmenterParams, UnimodalParams
from .registry import register_model
from .resnet import get_backbone
from .segmenter import FusionSegmenter

RCU_RESIDUAL = SegmenterParams.rcu_residual


@register_model(params=UnimodalParams)
def unimodal(*, backbone: str, num_classes: int, modalities: Sequence[str], modality: str | None = None,
             in_channels: int = 3, rcu_residual: str = RCU_RESIDUAL) -> FusionModel:
    """A single-modality network; it reads ``modality`` (default: the first) from the stacked input."""
    chosen = modality or modalities[0]
    return FusionSegmenter(get_backbone(backbone), num_classes, modalities, branch_modalities=[chosen],
                           in_channels=in_channels, rcu_residual=rcu_residual)


@register_model(params=SegmenterParams)
def early_concat(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3,
                 rcu_residual: str = RCU_RESIDUAL) -> FusionModel:
    return EarlyConcat(get_backbone(backbone), num_classes, modalities, in_channels=in_channels,
                       rcu_residual=rcu_residual)


@register_model(params=SegmenterParams)
def late_fusion(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3,
                rcu_residual: str = RCU_RESIDUAL) -> FusionModel:
    return LateFusion(get_backbone(backbone), num_classes, modalities, in_channels=in_channels,
                      rcu_residual=rcu_residual)


@register_model(params=SegmenterParams)
def shared_bn(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3,
              rcu_residual: str = RCU_RESIDUAL) -> FusionModel:
    """Shared convs *and* shared BN across modalities, alpha-ensembled: the papers' ablation."""
    return FusionSegmenter(get_backbone(backbone), num_classes, modalities, in_channels=in_channels, shared_bn=True,
                           rcu_residual=rcu_residual)


@register_model(params=CENParams)
def cen(*, backbone: str, num_classes: int, modalities: Sequence[str], threshold: float = CENParams.threshold,
        portion: float | None = CENParams.portion, l1_lambda: float | None = None,
        sparsity: str = CENParams.sparsity, in_channels: int = 3, rcu_residual: str = RCU_RESIDUAL) -> FusionModel:
    """``l1_lambda`` None: the effective weight of ``CENParams()`` for these modalities."""
    if l1_lambda is None:
        l1_lambda = CENParams().effective_lambda(len(modalities))
    return ChannelExchangingNet(get_backbone(backbone), num_classes, modalities, threshold=threshold,
                                portion=portion, l1_lambda=l1_lambda, sparsity=sparsity, in_channels=in_channels,
                                rcu_residual=rcu_residual)


@register_model(params=AsymFusionParams)
def asymfusion(*, backbone: str, num_classes: int, modalities: Sequence[str],
               shuffle_groups: int = AsymFusionParams.shuffle_groups,
               shift_offsets: Sequence[Sequence[int]] = AsymFusionParams.shift_offsets, in_channels: int = 3,
               rcu_residual: str = RCU_RESIDUAL) -> FusionModel:
    return AsymFusionNet(get_backbone(backbone), num_classes, modalities, shuffle_groups=shuffle_groups,
                         shift_offsets=shift_offsets, in_channels=in_channels, rcu_residual=rcu_residual)
