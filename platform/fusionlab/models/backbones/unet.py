"""The pix2pix U-Net generators (``models/unet.py``) of the translation models; they take no ImageNet file."""

from __future__ import annotations

from ..backbone_registry import BackboneFamily, register_backbone, register_family
from ..unet import UNetSpec

UNET = register_family(BackboneFamily("unet", UNetSpec, task="translation", description="pix2pix U-Net generator"))


@register_backbone(family=UNET)
def pix2pix_unet() -> UNetSpec:
    """pix2pix's unet_256."""
    return UNetSpec(levels=8, base=64)


@register_backbone(family=UNET, tiny=True)
def unet_mini() -> UNetSpec:
    """For CPU tests and demos (inputs divisible by 32)."""
    return UNetSpec(levels=5, base=16)
