"""What predict writes — palette label PNGs, overlays and predictions.csv for a segmentation model, generated RGB
PNGs and predictions.csv for a translation model — into a staging dir (``fusionlab.staging``) renamed into place at
the end.

A label PNG is 8-bit palette (mode "P"): its pixel values are the class indices, and viewers show class colours.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from fusionlab.data import DatasetError, ModalitySpec
from fusionlab.staging import Staging, existing_entries

LABELS, OVERLAYS, IMAGES, TABLE = "labels", "overlays", "images", "predictions.csv"
OVERLAY_ALPHA = 0.5


def palette(num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """``[256, 3]`` uint8 colours: up to 20 classes as the run's plots draw them (tab20), more from tab20/b/c (60),
    beyond that evenly spaced hues; the ignore index black."""
    if num_classes > 256:
        raise DatasetError(f"the model predicts {num_classes} classes; an 8-bit palette label PNG holds at most 256")
    count = max(num_classes, 2)
    if count <= 20:
        colours = colormaps["tab20"].resampled(count)(np.arange(count))[:, :3]
    elif count <= 60:
        colours = np.concatenate([colormaps[name].colors for name in ("tab20", "tab20b", "tab20c")])[:count, :3]
    else:
        colours = colormaps["nipy_spectral"].resampled(count)(np.arange(count))[:, :3]
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:count] = np.round(np.asarray(colours) * 255).astype(np.uint8)
    if 0 <= ignore_index < 256:
        table[ignore_index] = 0
    return table


def displayable(image: torch.Tensor, spec: ModalitySpec) -> np.ndarray:
    """Undo the normalisation of a model input ``[3, H, W]``: ``[H, W, 3]`` uint8 (as the run's plots show it)."""
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    value = (image.float().cpu() * std + mean) / spec.scale
    value = value / (255.0 if spec.dtype == "uint8" else max(float(value.max()), 1.0))
    return np.round(value.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def _save_png(image: Image.Image, path: Path) -> None:
    partial = path.with_name(f".{path.name}.partial")
    image.save(partial, format="PNG")
    os.replace(partial, path)


class StagedOutput:
    """``with Writer(out) as writer: writer.write(...)``: everything lands in a hidden temp dir beside ``out`` and is
    renamed to ``out`` on success; on failure (SIGTERM included) the temp dir is removed and ``out`` untouched.

    An existing non-empty ``out`` is refused unless ``overwrite``; even then only an earlier predict output (labels/,
    overlays/, images/, predictions.csv) is replaced, never a directory holding anything else.
    """

    folders: tuple[str, ...] = ()

    def __init__(self, out: str | os.PathLike, overwrite: bool = False):
        self.out = Path(out)
        self.overwrite = overwrite
        check_out(self.out, overwrite)
        self._staging = Staging(self.out)
        self.tmp = self._staging.path
        self.rows: list[list] = []

    def __enter__(self):
        self._staging.__enter__()
        for folder in self.folders:
            (self.tmp / folder).mkdir()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._write_table()
                check_out(self.out, self.overwrite)  # it may have appeared while predicting
                self._staging.commit()
        finally:
            self._staging.abort()  # removes the staging dir unless it was committed

    def header(self) -> list[str]:
        raise NotImplementedError

    def _write_table(self) -> None:
        with open(self.tmp / TABLE, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.header())
            writer.writerows(self.rows)


class PredictionWriter(StagedOutput):
    """Segmentation: ``labels/<id>.png``, ``overlays/<id>.png`` and a row per sample with the class fractions."""

    folders = (LABELS, OVERLAYS)

    def __init__(self, out: str | os.PathLike, classes: Sequence[str], ignore_index: int = 255,
                 overwrite: bool = False):
        super().__init__(out, overwrite)
        self.classes = list(classes)
        self.palette = palette(len(self.classes), ignore_index).flatten().tolist()
        self.colours = np.asarray(self.palette, dtype=np.float32).reshape(256, 3)

    def write(self, sample_id: str, source: str, prediction: np.ndarray, display: np.ndarray) -> np.ndarray:
        """``prediction`` ``[H, W]`` class indices, ``display`` ``[H, W, 3]`` uint8; returns per-class pixel counts."""
        label = Image.fromarray(prediction.astype(np.uint8))
        label.putpalette(self.palette)  # "L" -> "P": the values stay the class indices
        _save_png(label, self.tmp / LABELS / f"{sample_id}.png")
        blend = (1 - OVERLAY_ALPHA) * display + OVERLAY_ALPHA * self.colours[prediction]
        _save_png(Image.fromarray(np.round(blend).astype(np.uint8)),
                  self.tmp / OVERLAYS / f"{sample_id}.png")
        counts = np.bincount(prediction.ravel(), minlength=len(self.classes))[:len(self.classes)]
        height, width = prediction.shape
        fractions = counts / max(height * width, 1)
        self.rows.append([sample_id, source, height, width, self.classes[int(counts.argmax())],
                          *(f"{f:.6f}" for f in fractions)])
        return counts

    def header(self) -> list[str]:
        return ["id", "source", "height", "width", "dominant_class", *(f"fraction_{name}" for name in self.classes)]


class ImageWriter(StagedOutput):
    """Translation: the generated image of each sample as ``images/<id>.png`` (8-bit RGB) and a row per sample."""

    folders = (IMAGES,)

    def write(self, sample_id: str, source: str, image: torch.Tensor) -> None:
        """``image`` ``[C, H, W]`` in [0, 1] (C = 3, or 1 for a gray target)."""
        pixels = np.round(image.float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
        _save_png(Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels),
                  self.tmp / IMAGES / f"{sample_id}.png")
        self.rows.append([sample_id, source, pixels.shape[0], pixels.shape[1], f"{IMAGES}/{sample_id}.png"])

    def header(self) -> list[str]:
        return ["id", "source", "height", "width", "image"]


def check_out(out: Path, overwrite: bool) -> None:
    entries = existing_entries(out, DatasetError)
    if not entries:
        return
    if not overwrite:
        raise DatasetError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    foreign = [name for name in entries if name not in (LABELS, OVERLAYS, IMAGES, TABLE)]
    if foreign:
        raise DatasetError(f"{out} holds files that are not a predict output ({', '.join(foreign[:5])}); "
                           f"--overwrite replaces only an earlier predict output, choose another --out")
