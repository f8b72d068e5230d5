"""From a decoded Sample to model input: normalise, then (training) random scale, pad, crop and flip — on the CPU
or, from the stored values of a compact row, on the training device (``device_rows``).

All modalities and the label move together. The random scale resizes images bilinearly (``resize="bilinear"``) or
as the references do (``"reference"``: rgb bicubic, depth nearest, any other modality bicubic — by modality name, as
their ``ResizeAndScale``), labels always by nearest neighbour. Padding, at the bottom and right or evenly on every
side (``pad="centre"``, the references' ``Pad``), is 0 for the (normalised) images — the mean colour, as the
references pad RGB with the ImageNet mean — and the ignore index for labels. One-channel modalities are replicated to
3 channels last, as the references feed depth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .codec import as_hwc
from .manifest import DatasetError, Manifest, ModalitySpec
from .sample import Sample

# yikaiw/CEN ResizeAndScale: {'rgb': cv2.INTER_CUBIC, 'depth': cv2.INTER_NEAREST}, every other input cubic.
REFERENCE_INTERPOLATION = {"rgb": "bicubic", "depth": "nearest"}
RESIZE_MODES = ("reference", "bilinear")
PAD_MODES = ("centre", "bottom_right")


@dataclass(frozen=True)
class Augment:
    """Training augmentation (the references': random scale 0.5-2.0 with the shorter side raised to at least 350,
    pad and crop, horizontal flip)."""

    crop: tuple[int, int]  # (H, W) of the training crop
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    min_short_side: int | None = None  # a scale leaving the shorter side below this is raised to reach it
    resize: str = "bilinear"  # one of RESIZE_MODES
    pad: str = "bottom_right"  # one of PAD_MODES: where an image smaller than the crop is padded

    def __post_init__(self):
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.pad not in PAD_MODES:
            raise ValueError(f"pad must be one of {PAD_MODES}, got {self.pad!r}")

    def interpolation(self, modality: str) -> str:
        if self.resize == "bilinear":
            return "bilinear"
        return REFERENCE_INTERPOLATION.get(modality, "bicubic")

    def draw_scale(self, height: int, width: int, rng: np.random.Generator) -> float:
        """The references' rule: draw in ``scale_range``, then raise it so the shorter side is ``min_short_side``."""
        scale = rng.uniform(*self.scale_range)
        short = min(height, width)
        if self.min_short_side is not None and short * scale < self.min_short_side:
            scale = self.min_short_side / short
        return scale


def resize(image: torch.Tensor, size: tuple[int, int], mode: str, scale: float | None = None) -> torch.Tensor:
    """``[C, H, W]`` float to ``size``. With ``scale`` the sampling grid is cv2.resize(fx=fy=scale)'s (output pixel
    d reads input (d + 0.5) / scale - 0.5; torch's default, in / out, is up to half an input pixel off it at the far
    edge): ``nearest`` is then INTER_NEAREST (floor(d / scale), not ``nearest-exact``) and ``bicubic`` is INTER_CUBIC
    (a = -0.75, border replicated). cv2 also rounds and saturates uint8 results; here normalised floats are resized,
    so bicubic's overshoot at edges stays."""
    if scale is None:
        align = None if mode == "nearest" else False
        return F.interpolate(image[None], size=size, mode=mode, align_corners=align)[0]
    if mode == "nearest":
        return torch.ops.aten.upsample_nearest2d(image[None], list(size), scale, scale)[0]
    op = {"bicubic": torch.ops.aten.upsample_bicubic2d, "bilinear": torch.ops.aten.upsample_bilinear2d}[mode]
    return op(image[None], list(size), False, scale, scale)[0]


def normalise(image: np.ndarray | torch.Tensor, spec: ModalitySpec) -> torch.Tensor:
    """``[H, W(, C)]`` stored values (an array, or a tensor on any device) -> ``[C, H, W]`` float32 tensor on the
    same device, ``(value * scale - mean) / std``."""
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(as_hwc(image).astype(np.float32))
    image = as_hwc(image).to(torch.float32).permute(2, 0, 1) * spec.scale
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=image.device).view(-1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=image.device).view(-1, 1, 1)
    return (image - mean) / std


def select_modalities(manifest: Manifest, modalities: Sequence[str] | None) -> list[str]:
    chosen = list(modalities) if modalities else [m for m in manifest.modalities if m != manifest.target]
    unknown = [m for m in chosen if m not in manifest.modalities]
    if unknown:
        raise DatasetError(f"dataset {manifest.name!r} has no modality {unknown}; it has {list(manifest.modalities)}")
    return chosen


def pad_sides(size: tuple[int, int], crop: tuple[int, int], pad: str) -> tuple[int, int, int, int]:
    """``F.pad``'s (left, right, top, bottom) bringing ``size`` up to ``crop``: all at the bottom and right, or
    the references' ``Pad``, (crop - size + 1) // 2 on each side (one pixel more than needed when that is odd)."""
    pad_h, pad_w = max(crop[0] - size[0], 0), max(crop[1] - size[1], 0)
    if pad == "centre":
        return ((pad_w + 1) // 2,) * 2 + ((pad_h + 1) // 2,) * 2
    return 0, pad_w, 0, pad_h


def augment_tensors(images: list[torch.Tensor], label: torch.Tensor | None, augment: Augment, ignore_index: int,
                    rng: np.random.Generator, names: Sequence[str]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Random scale, pad to the crop, random crop, random horizontal flip — the same draw for every input.
    ``names``: each image's modality (its interpolation)."""
    height, width = images[0].shape[-2:]
    scale = augment.draw_scale(height, width, rng)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    grid = scale if augment.resize == "reference" else None
    images = [resize(im, size, augment.interpolation(name), grid) for im, name in zip(images, names, strict=True)]
    if label is not None:
        label = resize(label[None].float(), size, "nearest", grid)[0].long()
    crop_h, crop_w = augment.crop
    sides = pad_sides(size, augment.crop, augment.pad)  # (left, right, top, bottom)
    if any(sides):
        images = [F.pad(im, sides, value=0.0) for im in images]
        if label is not None:
            label = F.pad(label, sides, value=ignore_index)
    top = int(rng.integers(0, size[0] + sides[2] + sides[3] - crop_h + 1))
    left = int(rng.integers(0, size[1] + sides[0] + sides[1] - crop_w + 1))
    images = [im[:, top: top + crop_h, left: left + crop_w] for im in images]
    if label is not None:
        label = label[top: top + crop_h, left: left + crop_w]
    if augment.hflip and rng.random() < 0.5:
        images = [im.flip(-1) for im in images]
        label = label.flip(-1) if label is not None else None
    return images, label


def prepared_names(manifest: Manifest, modalities: Sequence[str]) -> list[str]:
    """The modalities ``prepare`` reads: the inputs, and for translation the target last."""
    return list(modalities) + ([manifest.target] if manifest.task == "translation" else [])


def prepare(sample: Sample, manifest: Manifest, modalities: Sequence[str], augment: Augment | None = None,
            rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
    """Model-ready tensors: ``image`` ``[M, 3, H, W]`` float32 (and ``target`` ``[C, H, W]`` for translation,
    ``label`` ``[H, W]`` int64 for segmentation)."""
    return prepare_values(sample.modalities, sample.label, manifest, modalities, augment, rng)


def prepare_values(images: Mapping[str, np.ndarray | torch.Tensor], label: np.ndarray | torch.Tensor | None,
                   manifest: Manifest, modalities: Sequence[str], augment: Augment | None = None,
                   rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
    """``prepare`` from a sample's stored values (arrays, or tensors on any device: the result is on theirs)."""
    names = prepared_names(manifest, modalities)
    tensors = [normalise(images[name], manifest.modalities[name]) for name in names]
    if isinstance(label, np.ndarray):
        label = torch.from_numpy(label.astype(np.int64))
    elif label is not None:
        label = label.long()
    if augment is not None:
        ignore = manifest.label.ignore_index if manifest.label else 255
        tensors, label = augment_tensors(tensors, label, augment, ignore, rng or np.random.default_rng(), names)
    inputs = [im.expand(3, -1, -1) if im.shape[0] == 1 else im for im in tensors[: len(modalities)]]
    out = {"image": torch.stack(inputs).contiguous()}
    if manifest.task == "translation":
        out["target"] = tensors[-1].contiguous()
    if label is not None:
        out["label"] = label.contiguous()
    return out
