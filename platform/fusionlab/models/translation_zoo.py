"""The registered translation models (``task="translation"``): U-Net generators, ``num_classes`` output channels."""

from __future__ import annotations

from collections.abc import Sequence

from .asym import REFERENCE_SHIFT_OFFSETS, REFERENCE_SHUFFLE_GROUPS
from .fusion import FusionModel
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


def _needs_fusion(name: str, modalities: Sequence[str]) -> None:
    if len(modalities) < 2:
        raise ValueError(f"{name} needs at least 2 modalities, got {list(modalities)}")


@register_model(task="translation")
def unimodal(*, backbone: str, num_classes: int, modalities: Sequence[str], modality: str | None = None,
             in_channels: int = 3) -> FusionModel:
    """The pix2pix generator on one modality (``modality``, default: the first) read from the stacked input."""
    return TranslationNet(get_translation_backbone(backbone), num_classes, modalities,
                          branch_modalities=[modality or modalities[0]], in_channels=in_channels)


@register_model(task="translation")
def concat(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3) -> FusionModel:
    """Early fusion: one generator on the modalities concatenated along channels."""
    return TranslationNet(get_translation_backbone(backbone), num_classes, modalities, concat_inputs=True,
                          in_channels=in_channels)


@register_model(task="translation")
def average(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3) -> FusionModel:
    """After the norm of down layers 2..levels-1 every branch takes the mean over the branches."""
    _needs_fusion("average", modalities)
    return TranslationNet(get_translation_backbone(backbone), num_classes, modalities, in_channels=in_channels,
                          layer_factory=fusing_factory(AverageDownLayer))


@register_model(task="translation")
def attention(*, backbone: str, num_classes: int, modalities: Sequence[str], in_channels: int = 3) -> FusionModel:
    """At the same layers, per-pixel softmax attention over the branches (shared 1x1 scoring conv)."""
    _needs_fusion("attention", modalities)
    return TranslationNet(get_translation_backbone(backbone), num_classes, modalities, in_channels=in_channels,
                          layer_factory=fusing_factory(AttentionDownLayer))


@register_model(task="translation")
def cen(*, backbone: str, num_classes: int, modalities: Sequence[str], threshold: float = 1e-2,
        portion: float | None = None, l1_lambda: float = 1e-3, sparsity: str = "loss",
        in_channels: int = 3) -> FusionModel:
    _needs_fusion("cen", modalities)
    return ExchangingTranslationNet(get_translation_backbone(backbone), num_classes, modalities, threshold=threshold,
                                    portion=portion, l1_lambda=l1_lambda, sparsity=sparsity, in_channels=in_channels)


@register_model(task="translation")
def asymfusion(*, backbone: str, num_classes: int, modalities: Sequence[str],
               shuffle_groups: int = REFERENCE_SHUFFLE_GROUPS,
               shift_offsets: Sequence[Sequence[int]] = REFERENCE_SHIFT_OFFSETS, in_channels: int = 3) -> FusionModel:
    _needs_fusion("asymfusion", modalities)
    if shuffle_groups < 2:
        raise ValueError(f"asymfusion shuffle_groups must be >= 2, got {shuffle_groups}")
    offsets = tuple(tuple(int(v) for v in o) for o in shift_offsets)
    if not offsets or any(len(o) != 2 for o in offsets):
        raise ValueError(f"asymfusion shift_offsets must be a non-empty list of (dy, dx), got {shift_offsets}")
    factory = fusing_factory(AsymDownLayer, groups=shuffle_groups, offsets=offsets)
    return TranslationNet(get_translation_backbone(backbone), num_classes, modalities, in_channels=in_channels,
                          layer_factory=factory)
