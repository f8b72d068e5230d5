"""Cityscapes, 19 train classes: ``leftImg8bit`` RGB, 16-bit ``disparity`` and ``gtFine`` labelIds -> train ids.

A frame is ``leftImg8bit/SPLIT/CITY/FRAME_leftImg8bit.png`` with ``disparity/SPLIT/CITY/FRAME_disparity.png`` and
``gtFine/SPLIT/CITY/FRAME_gtFine_labelIds.png``; its sample id is FRAME (``city_seq_frame``).

Disparity is stored unchanged as uint16: d > 0 means (d - 1) / 256 pixels, 0 means invalid. Disparities rarely
exceed ~128 px (d ~ 32768), so the model input scale is 1/32768: roughly [0, 1], reaching 2 only for the nearest
points.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..manifest import DatasetError, LabelSpec, Manifest, ModalitySpec, rgb_spec
from ..sample import Sample
from ..writer import DEFAULT_MAX_SHARD_BYTES
from .common import SourceSample, read_label_map, read_rgb, read_single_channel, require_dir, write_samples

# the official labelId -> trainId table (cityscapesScripts' labels.py); every other labelId is ignored
LABEL_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14,
    28: 15, 31: 16, 32: 17, 33: 18,
}
CITYSCAPES19_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation", "terrain",
    "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
IGNORE = 255
IMAGE_SUFFIX = "_leftImg8bit.png"
DISPARITY_SCALE = 1 / 32768


def train_id_table() -> np.ndarray:
    """A 256-entry lookup table labelId -> trainId (255 = ignore)."""
    table = np.full(256, IGNORE, dtype=np.uint8)
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        table[label_id] = train_id
    return table


def convert_cityscapes(src: str | Path, out: str | Path, *, overwrite: bool = False,
                       max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                       splits: Sequence[str] = ("train", "val")) -> Manifest:
    src = require_dir(Path(src), "Cityscapes root")
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    frames, skipped = [], []
    for split in splits:
        images = require_dir(src / "leftImg8bit" / split, f"Cityscapes leftImg8bit/{split}")
        if split == "test" and not (src / "gtFine" / split).is_dir():
            skipped.append(split)  # the public test split ships without labels
            continue
        require_dir(src / "gtFine" / split, f"Cityscapes gtFine/{split}")
        found = sorted(images.glob(f"*/*{IMAGE_SUFFIX}"))
        if not found:
            raise DatasetError(f"{images}: no CITY/*{IMAGE_SUFFIX} files found")
        frames += [(split, path) for path in found]
    disparity = ModalitySpec("uint16", 1, scale=DISPARITY_SCALE, unit="(d - 1) / 256 px, 0 = invalid")
    manifest = Manifest(name="cityscapes", task="segmentation", modalities={"rgb": rgb_spec(), "disparity": disparity},
                        label=LabelSpec(CITYSCAPES19_CLASSES, ignore_index=IGNORE),
                        source={"converter": "cityscapes", "splits": list(splits), "skipped_splits": skipped})
    table = train_id_table()
    samples = (_sample(src, split, path, table) for split, path in frames)
    return write_samples(Path(out), manifest, samples, total=len(frames), overwrite=overwrite,
                         max_shard_bytes=max_shard_bytes)


def _sample(src: Path, split: str, image_path: Path, table: np.ndarray) -> SourceSample:
    city, frame = image_path.parent.name, image_path.name.removesuffix(IMAGE_SUFFIX)
    rgb = read_rgb(image_path)
    disparity_path = src / "disparity" / split / city / f"{frame}_disparity.png"
    disparity = read_single_channel(disparity_path, "disparity", context=f"for {image_path.name}")
    if disparity.dtype != np.uint16:
        raise DatasetError(f"{disparity_path}: disparity is {disparity.dtype}; expected a 16-bit PNG")
    label_path = src / "gtFine" / split / city / f"{frame}_gtFine_labelIds.png"
    label = table[read_label_map(label_path, context=f"for {image_path.name}")]
    return str(image_path), Sample(frame, split, {"rgb": rgb, "disparity": disparity}, label)
