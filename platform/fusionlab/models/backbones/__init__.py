"""The backbones, one module per family: each registers its family (encoder, default decoder, ImageNet file
mapping) and its named backbones with ``models.backbone_registry.register_backbone``. Every module here is imported
when the package is (``import_all``), so a new backbone is one new file in this folder and nothing else.

``resnet``: bottleneck ResNets under the Light-Weight RefineNet decoder (the CEN and AsymFusion NYUDv2 references);
``xception``: aligned Xceptions under DeepLabv3+ (AsymFusion's Cityscapes row); ``mit``: Mix Transformers under
SegFormer's all-MLP decoder (TokenFusion's NYUDv2 rows); ``unet``: the pix2pix U-Nets (translation).
"""

from __future__ import annotations

import importlib
import pkgutil

from ..backbone_registry import (
    BACKBONES,
    SegmentationBackbone,
    backbone_family,
    family_of,
    get_backbone,
    list_backbones,
)


def import_all() -> None:
    """Import every module of this package (those on ``__path__`` now: a test may add a folder to it)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


import_all()

__all__ = ["BACKBONES", "SegmentationBackbone", "backbone_family", "family_of", "get_backbone", "import_all",
           "list_backbones"]
