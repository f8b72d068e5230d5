"""SUN RGB-D, 37 classes, from the common prepared folder: ``image/``, ``depth/``, ``label/``, ``train.txt`` and
``test.txt``.

The lists hold one sample stem per line; a sample is ``image/STEM.jpg`` (or ``.png``), ``depth/STEM.png`` (16-bit)
and ``label/STEM.png`` (0 = unlabelled, 1..37 = classes). Image sizes vary between samples.

SUN RGB-D's depth PNGs hold millimetres with the 16 bits rotated right by three (its toolbox reads them as
``bitor(bitshift(d, -3), bitshift(d, 16 - 3))``); ``depth_bitshift=True`` undoes that rotation. Pass False for a
folder whose depth was already converted to plain millimetres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..manifest import DatasetError, LabelSpec, Manifest, depth_mm_spec, rgb_spec
from ..sample import Sample
from ..writer import DEFAULT_MAX_SHARD_BYTES
from .common import SourceSample, read_label_map, read_lines, read_rgb, read_single_channel, require_dir, write_samples

SUNRGBD37_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture", "counter",
    "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor_mat", "clothes", "ceiling", "books",
    "fridge", "tv", "paper", "towel", "shower_curtain", "box", "whiteboard", "person", "night_stand", "toilet", "sink",
    "lamp", "bathtub", "bag",
)
IGNORE = 255
LISTS = {"train": "train.txt", "test": "test.txt"}
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg")


def convert_sunrgbd(src: str | Path, out: str | Path, *, overwrite: bool = False,
                    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, depth_bitshift: bool = True,
                    val_fraction: float = 0.1) -> Manifest:
    """``val_fraction`` of the 5285 training images become "val" (for checkpoint selection); "test" stays 5050."""
    src = require_dir(Path(src), "SUN RGB-D source")
    for folder in ("image", "depth", "label"):
        require_dir(src / folder, f"SUN RGB-D {folder}")
    entries = [(split, f"{src / name} line {number}", stem)
               for split, name in LISTS.items() for number, stem in read_lines(src / name)]
    manifest = Manifest(name="sunrgbd", task="segmentation", modalities={"rgb": rgb_spec(), "depth": depth_mm_spec()},
                        label=LabelSpec(SUNRGBD37_CLASSES, ignore_index=IGNORE),
                        source={"converter": "sunrgbd", "depth_bitshift": depth_bitshift})
    samples = (_sample(src, split, where, stem, depth_bitshift) for split, where, stem in entries)
    return write_samples(Path(out), manifest, samples, total=len(entries), overwrite=overwrite,
                         max_shard_bytes=max_shard_bytes, val_fraction=val_fraction)


def unrotate_depth(stored: np.ndarray) -> np.ndarray:
    """SUN RGB-D's stored depth -> millimetres: rotate the 16 bits left by three."""
    wide = stored.astype(np.uint32)
    return (((wide >> 3) | (wide << 13)) & 0xFFFF).astype(np.uint16)


def _sample(src: Path, split: str, where: str, stem: str, depth_bitshift: bool) -> SourceSample:
    rgb = read_rgb(_image_path(src, stem, where), context=f"listed in {where}")
    depth_path = src / "depth" / f"{stem}.png"
    depth = read_single_channel(depth_path, "depth", context=f"listed in {where}")
    if depth.dtype != np.uint16:
        raise DatasetError(f"{depth_path}: depth is {depth.dtype}; expected a 16-bit PNG")
    if depth_bitshift:
        depth = unrotate_depth(depth)
    label_path = src / "label" / f"{stem}.png"
    raw = read_label_map(label_path, context=f"listed in {where}")
    outside = np.unique(raw[raw > len(SUNRGBD37_CLASSES)])
    if outside.size:
        raise DatasetError(f"{label_path}: label values {outside[:10].tolist()}; expected 0 (unlabelled) or class ids "
                           f"1..{len(SUNRGBD37_CLASSES)}")
    label = np.where(raw == 0, IGNORE, raw.astype(np.int16) - 1).astype(np.uint8)
    return f"{where} ({stem})", Sample(stem, split, {"rgb": rgb, "depth": depth}, label)


def _image_path(src: Path, stem: str, where: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        path = src / "image" / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise DatasetError(f"{src / 'image' / stem}{{{','.join(IMAGE_SUFFIXES)}}}: RGB file not found (listed in {where})")
