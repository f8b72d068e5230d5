"""Aligned Xceptions (``models/xception.py``) under DeepLabv3+ (``models/deeplab.py``), as AsymFusion's Cityscapes
row; an ImageNet file is ``XceptionEncoder(spec, 1)``'s state dict in fusionlab's names (``models/pretrained.py``)."""

from __future__ import annotations

import torch

from ..backbone_registry import BackboneFamily, register_backbone, register_family
from ..deeplab import DeepLabV3PlusDecoder
from ..pretrained import encoder_state_from_torchvision, single_modality_keys
from ..xception import XceptionEncoder, XceptionSpec, plain_unit


def encoder(spec: XceptionSpec, num_branches: int, *, in_channels: int, shared_bn: bool, block_factory=plain_unit,
            encoder_class=None) -> XceptionEncoder:
    return (encoder_class or XceptionEncoder)(spec, num_branches, in_channels, shared_bn, block_factory)


def decoder(spec: XceptionSpec, encoder: XceptionEncoder, num_classes: int, num_branches: int, *, shared_bn: bool,
            rcu_residual: str) -> DeepLabV3PlusDecoder:
    """DeepLabv3+ has no residual conv units: ``rcu_residual`` is RefineNet's alone."""
    return DeepLabV3PlusDecoder(spec.out_channels, spec.low_level_channels, num_classes, num_branches,
                                aspp_dim=spec.aspp_dim, low_level_dim=spec.low_level_dim,
                                decoder_dim=spec.decoder_dim, output_stride=encoder.output_stride,
                                shared_bn=shared_bn)


def weight_keys(spec: XceptionSpec) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return single_modality_keys(XceptionEncoder(spec, 1))


XCEPTION = register_family(BackboneFamily(
    "xception", XceptionSpec, encoder=encoder, decoder=decoder, encoder_type=XceptionEncoder,
    imagenet_state=encoder_state_from_torchvision, weight_keys=weight_keys, release_checked=True,
    description="aligned Xception under DeepLabv3+"))


@register_backbone(family=XCEPTION)
def xception65() -> XceptionSpec:
    return XceptionSpec()


@register_backbone(family=XCEPTION)
def xception71() -> XceptionSpec:
    """TensorFlow's xception_71: two more entry units (stride 1) and the low-level features from the third."""
    return XceptionSpec(entry_widths=(128, 256, 256, 728, 728), entry_strides=(2, 1, 2, 1, 2), low_level_unit=2)


@register_backbone(family=XCEPTION, tiny=True)
def xception_mini() -> XceptionSpec:
    """For CPU tests: the same flows, narrow, with two middle units."""
    return XceptionSpec(entry_widths=(16, 24, 40), middle_blocks=2, exit_depths=((40, 48, 48), (56, 56, 64)),
                        stem=(8, 16), aspp_dim=24, low_level_dim=8, decoder_dim=24)
