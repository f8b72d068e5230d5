"""The prediction loops: batches in, forward pass, then label/overlay PNGs (segmentation) or generated images
(translation), and a CSV out."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .inputs import ArrowInputs, FolderInputs
from .outputs import ImageWriter, PredictionWriter, displayable


@dataclass
class PredictionSummary:
    out: Path
    samples: int
    classes: list[str]
    pixel_counts: np.ndarray  # [K] predicted pixels per class over all samples
    seconds: float


def display_modality(inputs: ArrowInputs | FolderInputs) -> str:
    """Shown under the overlays: the first 3-channel (RGB-like) input modality, else the first one."""
    return next((m for m in inputs.modalities if inputs.specs[m].channels == 3), inputs.modalities[0])


@torch.no_grad()
def predict(predictor: torch.nn.Module, inputs: ArrowInputs | FolderInputs, out: str | os.PathLike, *,
            overwrite: bool = False, batch_size: int = 8,
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
            labels = predictor(batch.images.to(device)).argmax(1).cpu().numpy()
            for k, sample_id in enumerate(batch.ids):
                counts += writer.write(sample_id, batch.sources[k], labels[k],
                                       displayable(batch.images[k, index], spec))
            if advance is not None:
                advance(len(batch.ids))
    return PredictionSummary(Path(out), len(inputs), classes, counts, time.perf_counter() - start)


@torch.no_grad()
def translate(predictor: torch.nn.Module, inputs: ArrowInputs | FolderInputs, out: str | os.PathLike, *,
              overwrite: bool = False, batch_size: int = 8, device: torch.device | str = "cpu",
              advance: Callable[[int], None] | None = None) -> tuple[int, float]:
    """Generate every input sample's image with a translation model and write ``out`` (see ``ImageWriter``);
    returns the number of samples and the seconds it took."""
    start = time.perf_counter()
    predictor = predictor.to(device).eval()
    with ImageWriter(out, overwrite) as writer:
        for batch in inputs.batches(batch_size):
            images = predictor(batch.images.to(device)).cpu()
            for k, sample_id in enumerate(batch.ids):
                writer.write(sample_id, batch.sources[k], images[k])
            if advance is not None:
                advance(len(batch.ids))
    return len(inputs), time.perf_counter() - start
