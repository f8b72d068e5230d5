"""The segmentation backbones by name: bottleneck ResNets (under the Light-Weight RefineNet decoder, as in the CEN and
AsymFusion NYUDv2 references), aligned Xceptions (under DeepLabv3+, as in AsymFusion's Cityscapes row) and Mix
Transformers (under SegFormer's all-MLP decoder, as in TokenFusion's NYUDv2 rows)."""

from __future__ import annotations

from .mit import MIT_BACKBONES, MiTSpec
from .resnet import RESNET_BACKBONES, BackboneSpec
from .xception import XCEPTION_BACKBONES, XceptionSpec

SegmentationBackbone = BackboneSpec | XceptionSpec | MiTSpec

BACKBONES: dict[str, SegmentationBackbone] = {**RESNET_BACKBONES, **XCEPTION_BACKBONES, **MIT_BACKBONES}


def get_backbone(name: str | SegmentationBackbone) -> SegmentationBackbone:
    """A named backbone, or ``name`` itself when it is a spec (any ``layers``, e.g. the golden vectors')."""
    if isinstance(name, SegmentationBackbone):
        return name
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}") from None


FAMILIES = {BackboneSpec: "resnet", XceptionSpec: "xception", MiTSpec: "mit"}


def backbone_family(backbone: str | SegmentationBackbone) -> str:
    """``resnet``, ``xception`` or ``mit``: what a model's fusion operates on (BN channels or tokens)."""
    return FAMILIES[type(get_backbone(backbone))]
