"""The servable form of a fusion model: batch-first input, full-resolution ensemble logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .segmenter import FusionModel


class SegmentationPredictor(nn.Module):
    """``[B, M, C, H, W]`` -> ensemble logits ``[B, K, H, W]`` (bilinear from the model's 1/4 resolution)."""

    def __init__(self, model: FusionModel):
        super().__init__()
        self.model = model
        self.modalities = list(model.modalities)
        self.num_classes = model.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ensemble = self.model(x.transpose(0, 1)).ensemble
        return F.interpolate(ensemble, size=x.shape[-2:], mode="bilinear", align_corners=False)
