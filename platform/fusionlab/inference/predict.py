"""The prediction loop: batches in, padded forward pass, argmax, label/overlay PNGs and a CSV out."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .inputs import ArrowInputs, FolderInputs
from .outputs import PredictionWriter, displayable

STRIDE = 32  # the encoder's output stride


@dataclass
class PredictionSummary:
    out: Path
    samples: int
    classes: list[str]
    pixel_counts: np.ndarray  # [K] predicted pixels per class over all samples
    seconds: float


def padded_logits(predictor: torch.nn.Module, images: torch.Tensor, multiple: int = STRIDE) -> torch.Tensor:
    """``[B, M, 3, H, W]`` -> ``[B, K, H, W]``. The model accepts any size (its decoder upsamples to each skip), but
    its feature maps align exactly only at multiples of the stride: pad bottom/right with 0 (the mean in normalised
    space, as training pads) to a multiple of ``multiple``, then crop the logits back."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h), value=0.0)
    return predictor(images)[..., :height, :width]


def display_modality(inputs: ArrowInputs | FolderInputs) -> str:
    """Shown under the overlays: the first 3-channel (RGB-like) input modality, else the first one."""
    return next((m for m in inputs.modalities if inputs.specs[m].channels == 3), inputs.modalities[0])


@torch.no_grad()
def predict(predictor: torch.nn.Module, inputs: ArrowInputs | FolderInputs, out: str | os.PathLike, *,
            overwrite: bool = False, batch_size: int = 8, pad_multiple: int = STRIDE,
            device: torch.device | str = "cpu", advance: Callable[[int], None] | None = None) -> PredictionSummary:
    """Predict every input sample and write ``out`` (see ``PredictionWriter``); ``advance(n)`` after each batch."""
    start = time.perf_counter()
    classes = list(getattr(predictor, "classes", None) or [str(k) for k in range(predictor.num_classes)])
    shown = display_modality(inputs)
    index, spec = inputs.modalities.index(shown), inputs.specs[shown]
    counts = np.zeros(len(classes), dtype=np.int64)
    predictor = predictor.to(device).eval()
    with PredictionWriter(out, classes, getattr(predictor, "ignore_index", 255), overwrite) as writer:
        for batch in inputs.batches(batch_size):
            labels = padded_logits(predictor, batch.images.to(device), pad_multiple).argmax(1).cpu().numpy()
            for k, sample_id in enumerate(batch.ids):
                counts += writer.write(sample_id, batch.sources[k], labels[k],
                                       displayable(batch.images[k, index], spec))
            if advance is not None:
                advance(len(batch.ids))
    return PredictionSummary(Path(out), len(inputs), classes, counts, time.perf_counter() - start)
