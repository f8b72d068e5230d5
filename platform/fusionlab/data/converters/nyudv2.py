"""NYU Depth v2, 40 classes: from the official labelled ``.mat`` or from the CEN / Light-Weight RefineNet folder.

The layout is detected from SRC:

* ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, i.e. HDF5) with ``splits.mat`` and ``classMapping40.mat`` (MATLAB v5);
* ``rgb/``, ``depth/``, ``masks/`` PNG folders with ``train.txt`` and ``val.txt`` lists of tab-separated
  ``rgb/X.png  masks/X.png  depth/X.png`` lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io

from ..manifest import DatasetError, LabelSpec, Manifest, depth_mm_spec, rgb_spec
from ..sample import Sample
from ..writer import DEFAULT_MAX_SHARD_BYTES
from .common import (
    SourceSample,
    read_label_map,
    read_lines,
    read_rgb,
    read_single_channel,
    require_dir,
    require_file,
    write_samples,
)

NYU40_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture", "counter",
    "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat", "clothes", "ceiling", "books",
    "refrigerator", "television", "paper", "towel", "shower curtain", "box", "whiteboard", "person", "night stand",
    "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)
IGNORE = 255
LABELED_MAT = "nyu_depth_v2_labeled.mat"
SPLITS_MAT = "splits.mat"
CLASS_MAPPING_MAT = "classMapping40.mat"
PREPARED_LISTS = {"train": "train.txt", "test": "val.txt"}  # the reference's "val" list is the 654-image test split


def convert_nyudv2(src: str | Path, out: str | Path, *, overwrite: bool = False,
                   max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, val_fraction: float = 0.1) -> Manifest:
    """``val_fraction`` of the 795 training images become "val" (for checkpoint selection); "test" stays 654."""
    src = require_dir(Path(src), "NYUDv2 source")
    write_options = {"overwrite": overwrite, "max_shard_bytes": max_shard_bytes, "val_fraction": val_fraction}
    if (src / LABELED_MAT).is_file():
        return _convert_labeled_mat(src, Path(out), write_options)
    if any((src / name).is_file() for name in PREPARED_LISTS.values()):
        return _convert_prepared(src, Path(out), write_options)
    raise DatasetError(f"{src}: not a NYUDv2 source; expected {LABELED_MAT} (with {SPLITS_MAT} and "
                       f"{CLASS_MAPPING_MAT}) or the prepared layout (rgb/, depth/, masks/, train.txt, val.txt)")


def _manifest(layout: str, classes: tuple[str, ...]) -> Manifest:
    return Manifest(name="nyudv2", task="segmentation", modalities={"rgb": rgb_spec(), "depth": depth_mm_spec()},
                    label=LabelSpec(classes, ignore_index=IGNORE), source={"converter": "nyudv2", "layout": layout})


# -- the official labelled .mat ------------------------------------------------------------------------------------
def _convert_labeled_mat(src: Path, out: Path, write_options: dict[str, Any]) -> Manifest:
    splits = _read_splits(src / SPLITS_MAT)
    lut, classes = _read_class_mapping(src / CLASS_MAPPING_MAT)
    path = src / LABELED_MAT
    try:
        mat = h5py.File(path, "r")
    except OSError as error:
        raise DatasetError(f"{path}: not a MATLAB v7.3 (HDF5) file ({error})") from None
    with mat:
        images, depths, labels = _labeled_datasets(mat, path)
        count = images.shape[0]
        outside = [index for index in splits if not 1 <= index <= count]
        if outside:
            raise DatasetError(f"{src / SPLITS_MAT}: image indices {outside[:10]} are outside 1..{count} "
                               f"({path.name} holds {count} images)")
        samples = (_mat_sample(path, images, depths, labels, lut, index, split)
                   for index, split in sorted(splits.items()))
        return write_samples(out, _manifest("labeled-mat", classes), samples, total=len(splits), **write_options)


def _labeled_datasets(mat: h5py.File, path: Path) -> tuple[h5py.Dataset, h5py.Dataset, h5py.Dataset]:
    """``images`` (N, 3, W, H) uint8, ``depths`` (N, W, H) metres, ``labels`` (N, W, H): MATLAB's column-major view."""
    missing = [name for name in ("images", "depths", "labels") if not isinstance(mat.get(name), h5py.Dataset)]
    if missing:
        raise DatasetError(f"{path}: datasets {missing} not found; expected images, depths and labels")
    images, depths, labels = mat["images"], mat["depths"], mat["labels"]
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
        raise DatasetError(f"{path}: 'images' is {images.dtype} {list(images.shape)}; expected uint8 (N, 3, W, H)")
    expected = (images.shape[0], images.shape[2], images.shape[3])
    for name, dataset, kinds in (("depths", depths, "f"), ("labels", labels, "ui")):
        if dataset.shape != expected or dataset.dtype.kind not in kinds:
            raise DatasetError(f"{path}: {name!r} is {dataset.dtype} {list(dataset.shape)}; expected "
                               f"{'float' if kinds == 'f' else 'integer'} {list(expected)} to match 'images'")
    return images, depths, labels


def _mat_sample(path: Path, images: h5py.Dataset, depths: h5py.Dataset, labels: h5py.Dataset, lut: np.ndarray,
                index: int, split: str) -> SourceSample:
    origin = f"{path} image {index}"
    rgb = np.ascontiguousarray(images[index - 1].transpose(2, 1, 0))
    metres = np.nan_to_num(depths[index - 1].T, nan=0.0)
    depth = np.clip(np.rint(metres * 1000.0), 0, 65535).astype(np.uint16)
    raw = labels[index - 1].T
    if raw.min() < 0 or raw.max() >= len(lut):
        raise DatasetError(f"{origin}: label values span {raw.min()}..{raw.max()}; expected 0 (unlabelled) or NYU "
                           f"class ids 1..{len(lut) - 1}")
    label = np.ascontiguousarray(lut[raw])
    return origin, Sample(f"{index:04d}", split, {"rgb": rgb, "depth": depth}, label)


def _load_matlab_v5(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    require_file(path, "MATLAB")
    try:
        contents = scipy.io.loadmat(path)
    except Exception as error:  # scipy raises several types (including NotImplementedError for v7.3 files)
        raise DatasetError(f"{path}: unreadable MATLAB v5 file ({type(error).__name__}: {error})") from None
    missing = [name for name in names if name not in contents]
    if missing:
        found = sorted(name for name in contents if not name.startswith("__"))
        raise DatasetError(f"{path}: variables {missing} not found; it has {found}")
    return {name: np.asarray(contents[name]) for name in names}


def _read_splits(path: Path) -> dict[int, str]:
    """1-based image index -> "train" | "test"."""
    variables = _load_matlab_v5(path, ("trainNdxs", "testNdxs"))
    splits: dict[int, str] = {}
    for split, name in (("train", "trainNdxs"), ("test", "testNdxs")):
        for index in variables[name].astype(np.int64).ravel().tolist():
            if index in splits:
                raise DatasetError(f"{path}: image index {index} appears more than once in trainNdxs/testNdxs")
            splits[index] = split
    return splits


def _read_class_mapping(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """A lookup table raw NYU label (0 = unlabelled, 1..894) -> 40-class id (0..39, 255 = ignore), and the names."""
    variables = _load_matlab_v5(path, ("mapClass", "className"))
    mapping = variables["mapClass"].ravel()
    if not np.all((mapping >= 0) & (mapping <= 40) & (mapping == np.round(mapping))):
        raise DatasetError(f"{path}: 'mapClass' must hold 40-class ids 1..40, got values {np.unique(mapping)[:10]}")
    classes = tuple(_matlab_string(cell) for cell in variables["className"].ravel())
    if len(classes) != 40:
        raise DatasetError(f"{path}: 'className' has {len(classes)} names, expected 40")
    lut = np.full(len(mapping) + 1, IGNORE, dtype=np.uint8)
    lut[1:] = np.where(mapping > 0, mapping - 1, IGNORE).astype(np.uint8)
    return lut, classes


def _matlab_string(cell: Any) -> str:
    values = np.asarray(cell).ravel()
    return str(values[0]) if values.size else ""


# -- the reference's prepared PNG folder -----------------------------------------------------------------------------
def _convert_prepared(src: Path, out: Path, write_options: dict[str, Any]) -> Manifest:
    entries = [(split, f"{src / name} line {number}", line.split())
               for split, name in PREPARED_LISTS.items() for number, line in read_lines(src / name)]
    for _, where, paths in entries:
        if len(paths) != 3:
            raise DatasetError(f"{where}: expected 'rgb/X.png<TAB>masks/X.png<TAB>depth/X.png', got {paths}")
    late_source: dict[str, Any] = {}
    samples = _prepared_samples(src, entries, late_source)
    return write_samples(out, _manifest("prepared-png", NYU40_CLASSES), samples, total=len(entries),
                         late_source=late_source, **write_options)


def _prepared_samples(src: Path, entries: list[tuple[str, str, list[str]]],
                      late_source: dict[str, Any]) -> Iterator[SourceSample]:
    """Read the listed samples; once exhausted, record the depth PNGs' bit depths in ``late_source``."""
    depth_bits = set()
    for split, where, (rgb_path, mask_path, depth_path) in entries:
        context = f"listed in {where}"
        rgb = read_rgb(src / rgb_path, context)
        label = read_label_map(src / mask_path, context)
        depth = read_single_channel(src / depth_path, "depth", context)
        depth_bits.add(8 * depth.dtype.itemsize)
        sample = Sample(Path(rgb_path).stem, split, {"rgb": rgb, "depth": depth.astype(np.uint16, copy=False)}, label)
        yield f"{where} ({rgb_path}, {mask_path}, {depth_path})", sample
    late_source["depth_png_bits"] = sorted(depth_bits)
    if 8 in depth_bits:
        late_source["depth_note"] = "8-bit depth PNGs were stored with their values unchanged (not millimetres)"
