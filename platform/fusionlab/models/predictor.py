"""The servable form of a fusion model: batch-first input, full-resolution ensemble logits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .fusion import FusionModel

UPSAMPLE_MODES = ("bilinear", "bicubic")


class SegmentationPredictor(nn.Module):
    """``[B, M, C, H, W]`` -> ensemble logits ``[B, K, H, W]``, upsampled from the model's 1/4 resolution bilinearly
    or, as the references score (``cv2.resize(..., INTER_CUBIC)``: the same kernel, a = -0.75, half-pixel centres),
    bicubically (``upsample``).

    Any size is accepted (the decoder resizes to each skip connection) and is run as it comes, unpadded — as
    validation runs during training; on the synthetic test split, zero-padding 120 rows to 128 cost RGB-only 7 mIoU
    points. ``fusionlab evaluate``, the test scores of a run and ``fusionlab predict`` all go through here, so the
    labels predict writes are the ones that were scored.
    """

    task = "segmentation"  # the dataset task it serves (a manifest's ``task``): what ``evaluate`` scores it by

    def __init__(self, model: FusionModel, input_specs: Mapping[str, Mapping[str, Any]] | None = None,
                 classes: Sequence[str] | None = None, ignore_index: int = 255, upsample: str = "bilinear"):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        self.upsample = upsample
        self.model = model
        self.modalities = list(model.modalities)
        self.num_classes = model.num_classes
        self.input_specs = {name: dict(spec) for name, spec in (input_specs or {}).items()}
        self.classes = list(classes) if classes is not None else [str(k) for k in range(model.num_classes)]
        self.ignore_index = ignore_index

    def settings(self) -> dict[str, Any]:
        """The constructor's arguments besides the model: what a saved model records (models/model_files.py)."""
        return {"input_specs": self.input_specs, "classes": self.classes, "ignore_index": self.ignore_index,
                "upsample": self.upsample}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ensemble = self.model(x.transpose(0, 1)).ensemble
        return F.interpolate(ensemble, size=x.shape[-2:], mode=self.upsample, align_corners=False)


class TranslationPredictor(nn.Module):
    """``[B, M, C, H, W]`` (normalised inputs, as the dataset serves them) -> the ensemble's images ``[B, K, H, W]``
    in [0, 1] (the target modality's ``value * scale``: for 8-bit RGB, pixel / 255)."""

    task = "translation"

    def __init__(self, model: FusionModel, input_specs: Mapping[str, Mapping[str, Any]] | None = None,
                 target: str | None = None):
        super().__init__()
        self.model = model
        self.modalities = list(model.modalities)
        self.input_specs = {name: dict(spec) for name, spec in (input_specs or {}).items()}
        self.target = target

    def settings(self) -> dict[str, Any]:
        """The constructor's arguments besides the model: what a saved model records (models/model_files.py)."""
        return {"input_specs": self.input_specs, "target": self.target}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model(x.transpose(0, 1)).ensemble.clamp(-1, 1) + 1) / 2
