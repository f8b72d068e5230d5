"""Mix Transformers (``models/mit.py``) under SegFormer's all-MLP decoder (``models/segformer.py``), as TokenFusion's
NYUDv2 rows (``mit_b0`` ... ``mit_b3``) and GeminiFusion's (``mit_b3``, ``mit_b5``); ImageNet weights are SegFormer's
``mit_bX.pth`` (``models/pretrained_mit.py``), the same layout for every size."""

from __future__ import annotations

from ..backbone_registry import BackboneFamily, register_backbone, register_family
from ..mit import MiTEncoder, MiTSpec
from ..pretrained_mit import mit_state_from_segformer, mit_weight_keys
from ..resnet import plain_block
from ..segformer import SegFormerDecoder


def encoder(spec: MiTSpec, num_branches: int, *, in_channels: int, shared_bn: bool, block_factory=plain_block,
            encoder_class=None) -> MiTEncoder:
    """Its norms are LayerNorms and no CNN block factory builds its blocks: ``encoder_class`` (TokenFusion's, for
    token exchange) is how a model fuses in it."""
    if shared_bn or block_factory is not plain_block:
        raise ValueError("a Mix Transformer backbone takes no shared-BN or exchanging CNN blocks: its norms are "
                         "LayerNorms (private per modality); fuse its tokens with tokenfusion")
    return (encoder_class or MiTEncoder)(spec, num_branches, in_channels)


def decoder(spec: MiTSpec, encoder: MiTEncoder, num_classes: int, num_branches: int, *, shared_bn: bool,
            rcu_residual: str) -> SegFormerDecoder:
    return SegFormerDecoder(spec.out_channels, spec.decoder_dim, num_classes, num_branches)


MIT = register_family(BackboneFamily(
    "mit", MiTSpec, encoder=encoder, decoder=decoder, encoder_type=MiTEncoder,
    imagenet_state=mit_state_from_segformer, weight_keys=mit_weight_keys,
    description="Mix Transformer under SegFormer's all-MLP decoder"))


@register_backbone(family=MIT)
def mit_b0() -> MiTSpec:
    return MiTSpec((32, 64, 160, 256), (1, 2, 5, 8), (2, 2, 2, 2))


@register_backbone(family=MIT)
def mit_b1() -> MiTSpec:
    return MiTSpec((64, 128, 320, 512), (1, 2, 5, 8), (2, 2, 2, 2))


@register_backbone(family=MIT)
def mit_b2() -> MiTSpec:
    return MiTSpec((64, 128, 320, 512), (1, 2, 5, 8), (3, 4, 6, 3))


@register_backbone(family=MIT)
def mit_b3() -> MiTSpec:
    return MiTSpec((64, 128, 320, 512), (1, 2, 5, 8), (3, 4, 18, 3))


@register_backbone(family=MIT)
def mit_b4() -> MiTSpec:
    return MiTSpec((64, 128, 320, 512), (1, 2, 5, 8), (3, 8, 27, 3))


@register_backbone(family=MIT)
def mit_b5() -> MiTSpec:
    return MiTSpec((64, 128, 320, 512), (1, 2, 5, 8), (3, 6, 40, 3))


@register_backbone(family=MIT, tiny=True)
def mit_mini() -> MiTSpec:
    """For CPU tests."""
    return MiTSpec((16, 32, 48, 64), (1, 2, 2, 4), (1, 1, 1, 1), decoder_dim=32)
