"""The registered models. Every one takes the same three arguments plus its own, and returns a FusionModel; its own
parameters' defaults are its params class's (``models/params.py``). The baselines (``families=None``) run on every
backbone family, one added later included; the fusion models name the families whose blocks they fuse in, and take
at least two modalities."""

from __future__ import annotations

from collections.abc import Sequence

from .asymfusion import AsymFusionNet
from .backbone_registry import get_backbone
from .baselines import EarlyConcat, LateFusion
from .cen import ChannelExchangingNet
from .fusion import FusionModel
from .params import (
    AsymFusionParams,
    CENParams,
    RandomExchangeParams,
    SegmenterParams,
    TokenFusionParams,
    UnimodalParams,
)
from .registry import CNN_FAMILIES, register_model
from .segmenter import FusionSegmenter
from .token_fusion import TokenFusionNet

RCU_RESIDUAL = SegmenterParams.rcu_residual


@register_model(params=UnimodalParams, families=None)
def unimodal(*, backbone: str, num_classes: int, modalities: Sequence[str], modality: str | None = None,
             in_channels: int = 3, rcu_residual: str = RCU_RESIDUAL) -> FusionModel:
    """A single-modality network; it reads ``modality`` (default: the first) from the stacked input."""
    chosen = modality or modalities[0]
    return FusionSegmenter(get_backbone(backbone), num_classes, modalities, branch_modalities=[chosen],
                           in_channels=in_channels, rcu_residual=rcu_residual)


@register_model(params=SegmenterParams, families=None)
def early_concat(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3,
                 rcu_residual: str = RCU_RESIDUAL) -> FusionModel:
    return EarlyConcat(get_backbone(backbone), num_classes, modalities, in_channels=in_channels,
                       rcu_residual=rcu_residual)


@register_model(params=SegmenterParams, families=None)
def late_fusion(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3,
                rcu_residual: str = RCU_RESIDUAL) -> FusionModel:
    return LateFusion(get_backbone(backbone), num_classes, modalities, in_channels=in_channels,
                      rcu_residual=rcu_residual)


@register_model(params=SegmenterParams, families=CNN_FAMILIES)
def shared_bn(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3,
              rcu_residual: str = RCU_RESIDUAL) -> FusionModel:
    """Shared convs *and* shared BN across modalities, alpha-ensembled: the papers' ablation."""
    return FusionSegmenter(get_backbone(backbone), num_classes, modalities, in_channels=in_channels, shared_bn=True,
                           rcu_residual=rcu_residual)


def _cen(rule: str, *, backbone: str, num_classes: int, modalities: Sequence[str],
         threshold: float = CENParams.threshold, portion: float | None = CENParams.portion,
         l1_lambda: float | None = None, sparsity: str = CENParams.sparsity, in_channels: int = 3,
         rcu_residual: str = RCU_RESIDUAL) -> FusionModel:
    """``l1_lambda`` None: the effective weight of ``CENParams()`` for these modalities."""
    if l1_lambda is None:
        l1_lambda = CENParams().effective_lambda(len(modalities))
    return ChannelExchangingNet(get_backbone(backbone), num_classes, modalities, threshold=threshold,
                                portion=portion, l1_lambda=l1_lambda, sparsity=sparsity, rule=rule,
                                in_channels=in_channels, rcu_residual=rcu_residual)


@register_model(params=CENParams, families=CNN_FAMILIES, min_modalities=2)
def cen(**kwargs) -> FusionModel:
    """CEN as the reference code runs it: exchange wherever ``|gamma| < threshold`` in an exchanging BN."""
    return _cen("gamma", **kwargs)


@register_model(params=CENParams, families=CNN_FAMILIES, min_modalities=2)
def cen_penalised_exchange(**kwargs) -> FusionModel:
    """The ablation "exchange only in the penalised portion" (the paper's wording): a channel below the threshold
    outside its modality's penalised block keeps its own value."""
    return _cen("penalised_gamma", **kwargs)


@register_model(params=SegmenterParams, families=CNN_FAMILIES, min_modalities=2)
def cen_no_exchange(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3,
                    rcu_residual: str = RCU_RESIDUAL) -> FusionModel:
    """CEN's network without exchanging: shared convs, private BN, the alpha ensemble, no sparsity penalty."""
    return ChannelExchangingNet(get_backbone(backbone), num_classes, modalities, threshold=0.0, l1_lambda=0.0,
                                rule="none", in_channels=in_channels, rcu_residual=rcu_residual)


@register_model(params=RandomExchangeParams, families=CNN_FAMILIES, min_modalities=2)
def cen_random_exchange(*, backbone: str, num_classes: int, modalities: Sequence[str],
                        fraction: float | None = RandomExchangeParams.fraction, seed: int = RandomExchangeParams.seed,
                        in_channels: int = 3, rcu_residual: str = RCU_RESIDUAL) -> FusionModel:
    """CEN's network exchanging a fixed random channel set (``RandomExchangeParams``), no sparsity penalty."""
    return ChannelExchangingNet(get_backbone(backbone), num_classes, modalities, threshold=0.0, l1_lambda=0.0,
                                rule="random", random_fraction=fraction, seed=seed, in_channels=in_channels,
                                rcu_residual=rcu_residual)


def _asymfusion(ops: tuple[str, ...], *, backbone: str, num_classes: int, modalities: Sequence[str],
                shuffle_groups: int = AsymFusionParams.shuffle_groups,
                shift_offsets: Sequence[Sequence[int]] = AsymFusionParams.shift_offsets, in_channels: int = 3,
                rcu_residual: str = RCU_RESIDUAL) -> FusionModel:
    return AsymFusionNet(get_backbone(backbone), num_classes, modalities, shuffle_groups=shuffle_groups,
                         shift_offsets=shift_offsets, ops=ops, in_channels=in_channels, rcu_residual=rcu_residual)


@register_model(params=AsymFusionParams, families=CNN_FAMILIES, min_modalities=2)
def asymfusion(**kwargs) -> FusionModel:
    return _asymfusion(("shuffle", "shift"), **kwargs)


@register_model(params=AsymFusionParams, families=CNN_FAMILIES, min_modalities=2)
def asymfusion_shuffle_only(**kwargs) -> FusionModel:
    """The ablation without the pixel shift (``shift_offsets`` unused)."""
    return _asymfusion(("shuffle",), **kwargs)


@register_model(params=AsymFusionParams, families=CNN_FAMILIES, min_modalities=2)
def asymfusion_shift_only(**kwargs) -> FusionModel:
    """The ablation without the channel shuffle: each branch adds the others' shifted kept channels, no exchange."""
    return _asymfusion(("shift",), **kwargs)


@register_model(params=TokenFusionParams, families=("mit",), min_modalities=2)
def tokenfusion(*, backbone: str, num_classes: int, modalities: Sequence[str],
                l1_lambda: float = TokenFusionParams.lambda_, threshold: float = TokenFusionParams.threshold,
                ensemble: str = TokenFusionParams.ensemble, in_channels: int = 3) -> FusionModel:
    """TokenFusion on a Mix Transformer backbone: tokens scored below ``threshold`` exchanged in every block."""
    return TokenFusionNet(get_backbone(backbone), num_classes, modalities, threshold=threshold, l1_lambda=l1_lambda,
                          ensemble=ensemble, in_channels=in_channels)
