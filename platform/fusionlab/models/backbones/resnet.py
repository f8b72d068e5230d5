"""Bottleneck ResNets (``models/resnet.py``) under the Light-Weight RefineNet decoder (``models/refinenet.py``), as in
the CEN and AsymFusion NYUDv2 references; ImageNet weights are torchvision's files (``models/pretrained.py``)."""

from __future__ import annotations

import torch

from ..backbone_registry import BackboneFamily, register_backbone, register_family
from ..pretrained import encoder_state_from_torchvision, single_modality_keys
from ..refinenet import RefineNetDecoder
from ..resnet import BackboneSpec, ResNetEncoder, plain_block


def encoder(spec: BackboneSpec, num_branches: int, *, in_channels: int, shared_bn: bool, block_factory=plain_block,
            encoder_class=None) -> ResNetEncoder:
    return (encoder_class or ResNetEncoder)(spec, num_branches, in_channels, shared_bn, block_factory)


def decoder(spec: BackboneSpec, encoder: ResNetEncoder, num_classes: int, num_branches: int, *, shared_bn: bool,
            rcu_residual: str) -> RefineNetDecoder:
    return RefineNetDecoder(spec.out_channels, spec.decoder_dims, num_classes, num_branches, rcu_residual=rcu_residual)


def weight_keys(spec: BackboneSpec) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return single_modality_keys(ResNetEncoder(spec, 1))


RESNET = register_family(BackboneFamily(
    "resnet", BackboneSpec, encoder=encoder, decoder=decoder, encoder_type=ResNetEncoder,
    imagenet_state=encoder_state_from_torchvision, weight_keys=weight_keys, release_checked=True,
    description="bottleneck ResNet under Light-Weight RefineNet"))


@register_backbone(family=RESNET)
def resnet50() -> BackboneSpec:
    return BackboneSpec((3, 4, 6, 3))


@register_backbone(family=RESNET)
def resnet101() -> BackboneSpec:
    return BackboneSpec((3, 4, 23, 3))


@register_backbone(family=RESNET)
def resnet152() -> BackboneSpec:
    return BackboneSpec((3, 8, 36, 3))


@register_backbone(family=RESNET, tiny=True)
def resnet_mini() -> BackboneSpec:
    """For CPU tests and demos: two blocks per stage so AsymFusion's fusion block (the last) has stride 1."""
    return BackboneSpec((2, 2, 2, 2), width=16, decoder_dims=(64, 32, 32, 32))
