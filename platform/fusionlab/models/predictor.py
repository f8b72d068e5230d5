"""The servable form of a fusion model: batch-first input, full-resolution ensemble logits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .segmenter import FusionModel


class SegmentationPredictor(nn.Module):
    """``[B, M, C, H, W]`` -> ensemble logits ``[B, K, H, W]`` (bilinear from the model's 1/4 resolution).

    Any size is accepted: the network runs on the input padded bottom/right to a multiple of its output stride (32)
    with 0 — the mean in normalised space, as training pads — since its feature maps align exactly only there, and
    the logits are cropped back. ``fusionlab evaluate``, the test scores of a run and ``fusionlab predict`` all go
    through here, so the labels predict writes are the ones that were scored.

    It also carries what inference on raw images needs: per input modality the dataset's encoding and normalisation
    (``input_specs``: the manifest's modality specs as plain dicts) and the class names.
    """

    def __init__(self, model: FusionModel, input_specs: Mapping[str, Mapping[str, Any]] | None = None,
                 classes: Sequence[str] | None = None, ignore_index: int = 255):
        super().__init__()
        self.model = model
        self.modalities = list(model.modalities)
        self.num_classes = model.num_classes
        self.input_specs = {name: dict(spec) for name, spec in (input_specs or {}).items()}
        self.classes = list(classes) if classes is not None else [str(k) for k in range(model.num_classes)]
        self.ignore_index = ignore_index

    stride = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.stride, -width % self.stride
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), value=0.0)
        ensemble = self.model(x.transpose(0, 1)).ensemble
        logits = F.interpolate(ensemble, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :height, :width]
