"""The registered translation models (``task="translation"``): U-Net generators, ``num_classes`` output channels;
their own parameters' defaults are their params classes' (``models/params.py``). All but ``unimodal`` fuse: they take
at least two modalities (``build`` and the config refuse fewer)."""

from __future__ import annotations

from collections.abc import Sequence

from .fusion import FusionModel
from .params import TranslationAsymFusionParams, TranslationCENParams, TranslationParams, TranslationUnimodalParams
from .registry import register_model
from .translation import (
    AsymDownLayer,
    AttentionDownLayer,
    AverageDownLayer,
    ExchangingTranslationNet,
    TranslationNet,
    fusing_factory,
)
from .unet import get_translation_backbone


@register_model(task="translation", params=TranslationUnimodalParams)
def unimodal(*, backbone: str, num_classes: int, modalities: Sequence[str], modality: str | None = None,
             in_channels: int = 3) -> FusionModel:
    """The pix2pix generator on one modality (``modality``, default: the first) read from the stacked input."""
    return TranslationNet(get_translation_backbone(backbone), num_classes, modalities,
                          branch_modalities=[modality or modalities[0]], in_channels=in_channels)


@register_model(task="translation", params=TranslationParams, min_modalities=2)
def concat(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3) -> FusionModel:
    """Early fusion: one generator on the modalities concatenated along channels."""
    return TranslationNet(get_translation_backbone(backbone), num_classes, modalities, concat_inputs=True,
                          in_channels=in_channels)


@register_model(task="translation", params=TranslationParams, min_modalities=2)
def average(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3) -> FusionModel:
    """After the norm of down layers 2..levels-1 every branch takes the mean over the branches."""
    return TranslationNet(get_translation_backbone(backbone), num_classes, modalities, in_channels=in_channels,
                          layer_factory=fusing_factory(AverageDownLayer))


@register_model(task="translation", params=TranslationParams, min_modalities=2)
def attention(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3) -> FusionModel:
    """At the same layers, per-pixel softmax attention over the branches (shared 1x1 scoring conv)."""
    return TranslationNet(get_translation_backbone(backbone), num_classes, modalities, in_channels=in_channels,
                          layer_factory=fusing_factory(AttentionDownLayer))


@register_model(task="translation", params=TranslationCENParams, min_modalities=2)
def cen(*, backbone: str, num_classes: int, modalities: Sequence[str],
        threshold: float = TranslationCENParams.threshold, portion: float | None = TranslationCENParams.portion,
        l1_lambda: float | None = None, sparsity: str = TranslationCENParams.sparsity,
        in_channels: int = 3) -> FusionModel:
    """``l1_lambda`` None: the effective weight of ``TranslationCENParams()`` (the reference's 1e-3, added once)."""
    if l1_lambda is None:
        l1_lambda = TranslationCENParams().effective_lambda(len(modalities))
    return ExchangingTranslationNet(get_translation_backbone(backbone), num_classes, modalities, threshold=threshold,
                                    portion=portion, l1_lambda=l1_lambda, sparsity=sparsity, in_channels=in_channels)


@register_model(task="translation", params=TranslationAsymFusionParams, min_modalities=2)
def asymfusion(*, backbone: str, num_classes: int, modalities: Sequence[str],
               shuffle_groups: int = TranslationAsymFusionParams.shuffle_groups,
               shift_offsets: Sequence[Sequence[int]] = TranslationAsymFusionParams.shift_offsets,
               in_channels: int = 3) -> FusionModel:
    if shuffle_groups < 2:
        raise ValueError(f"asymfusion shuffle_groups must be >= 2, got {shuffle_groups}")
    offsets = tuple(tuple(int(v) for v in o) for o in shift_offsets)
    if not offsets or any(len(o) != 2 for o in offsets):
        raise ValueError(f"asymfusion shift_offsets must be a non-empty list of (dy, dx), got {shift_offsets}")
    factory = fusing_factory(AsymDownLayer, groups=shuffle_groups, offsets=offsets)
    return TranslationNet(get_translation_backbone(backbone), num_classes, modalities, in_channels=in_channels,
                          layer_factory=factory)
