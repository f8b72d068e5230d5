"""From a decoded Sample to model input: normalise, then (training) random scale, pad, crop and flip.

All modalities and the label move together: images resize bilinearly, labels by nearest neighbour; padding is 0 for
the (normalised) images — the mean colour, as the references pad RGB with the ImageNet mean — and the ignore index
for labels. One-channel modalities are replicated to 3 channels last, as the references feed depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .codec import as_hwc
from .manifest import DatasetError, Manifest, ModalitySpec
from .sample import Sample


@dataclass(frozen=True)
class Augment:
    """Training augmentation (the references': random scale 0.5-2.0, pad and crop, horizontal flip)."""

    crop: tuple[int, int]  # (H, W) of the training crop
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True


def normalise(array: np.ndarray, spec: ModalitySpec) -> torch.Tensor:
    """``[H, W(, C)]`` array -> ``[C, H, W]`` float tensor ``(value * scale - mean) / std``."""
    image = torch.from_numpy(as_hwc(array).astype(np.float32)).permute(2, 0, 1) * spec.scale
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)
    return (image - mean) / std


def select_modalities(manifest: Manifest, modalities: Sequence[str] | None) -> list[str]:
    chosen = list(modalities) if modalities else [m for m in manifest.modalities if m != manifest.target]
    unknown = [m for m in chosen if m not in manifest.modalities]
    if unknown:
        raise DatasetError(f"dataset {manifest.name!r} has no modality {unknown}; it has {list(manifest.modalities)}")
    return chosen


def augment_tensors(images: list[torch.Tensor], label: torch.Tensor | None, augment: Augment, ignore_index: int,
                    rng: np.random.Generator) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Random scale, pad to the crop, random crop, random horizontal flip — the same draw for every input."""
    height, width = images[0].shape[-2:]
    scale = rng.uniform(*augment.scale_range)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    images = [F.interpolate(im[None], size=size, mode="bilinear", align_corners=False)[0] for im in images]
    if label is not None:
        label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
    crop_h, crop_w = augment.crop
    pad_h, pad_w = max(crop_h - size[0], 0), max(crop_w - size[1], 0)
    if pad_h or pad_w:
        images = [F.pad(im, (0, pad_w, 0, pad_h), value=0.0) for im in images]
        if label is not None:
            label = F.pad(label, (0, pad_w, 0, pad_h), value=ignore_index)
    top = int(rng.integers(0, size[0] + pad_h - crop_h + 1))
    left = int(rng.integers(0, size[1] + pad_w - crop_w + 1))
    images = [im[:, top: top + crop_h, left: left + crop_w] for im in images]
    if label is not None:
        label = label[top: top + crop_h, left: left + crop_w]
    if augment.hflip and rng.random() < 0.5:
        images = [im.flip(-1) for im in images]
        label = label.flip(-1) if label is not None else None
    return images, label


def prepare(sample: Sample, manifest: Manifest, modalities: Sequence[str], augment: Augment | None = None,
            rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
    """Model-ready tensors: ``image`` ``[M, 3, H, W]`` float32 (and ``target`` ``[C, H, W]`` for translation,
    ``label`` ``[H, W]`` int64 for segmentation)."""
    names = list(modalities) + ([manifest.target] if manifest.task == "translation" else [])
    images = [normalise(sample.modalities[name], manifest.modalities[name]) for name in names]
    label = torch.from_numpy(sample.label.astype(np.int64)) if sample.label is not None else None
    if augment is not None:
        ignore = manifest.label.ignore_index if manifest.label else 255
        images, label = augment_tensors(images, label, augment, ignore, rng or np.random.default_rng())
    inputs = [im.expand(3, -1, -1) if im.shape[0] == 1 else im for im in images[: len(modalities)]]
    out = {"image": torch.stack(inputs).contiguous()}
    if manifest.task == "translation":
        out["target"] = images[-1].contiguous()
    if label is not None:
        out["label"] = label.contiguous()
    return out
