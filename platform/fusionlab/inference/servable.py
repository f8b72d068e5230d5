"""A model as it is served and logged: the fusion model wrapped with its inputs' encodings and normalisation, and
(segmentation) the class names and how its logits are upsampled, or (translation) the target modality it generates.
Training logs it (``tracking.runs.RunTracker.log_model``) and scores it (``train.evaluate``); so does
``fusionlab import-checkpoint``."""

from __future__ import annotations

import dataclasses
from typing import Any

from fusionlab.data import Manifest
from fusionlab.models import FusionModel
from fusionlab.models.predictor import SegmentationPredictor, TranslationPredictor


def servable(model: FusionModel, manifest: Manifest, upsample: str = "bilinear") -> SegmentationPredictor:
    """The model as it is logged: with the inputs' encodings and normalisation, the class names and how its logits
    are upsampled to the input's size (``model.eval_upsample``)."""
    label = manifest.label
    return SegmentationPredictor(model, input_specs(model, manifest), label.classes if label else None,
                                 label.ignore_index if label else 255, upsample)


def translation_servable(model: FusionModel, manifest: Manifest) -> TranslationPredictor:
    """The generator as it is logged: with the inputs' encodings and normalisation, returning the ensemble's images
    of the target modality in [0, 1]."""
    return TranslationPredictor(model, input_specs(model, manifest), manifest.target)


def input_specs(model: FusionModel, manifest: Manifest) -> dict[str, dict[str, Any]]:
    return {name: dataclasses.asdict(manifest.modalities[name]) for name in model.modalities
            if name in manifest.modalities}
