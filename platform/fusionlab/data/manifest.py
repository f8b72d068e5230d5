"""The dataset manifest: what a fusionlab dataset directory holds, written last and read first.

A dataset is a directory of Parquet shards (``<split>-<index>.parquet``) plus ``manifest.json``. One row per sample:
``sample_id``, ``split``, ``height``, ``width``, one binary column per modality and ``label`` (segmentation). All
images of a sample share its height and width.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "fusionlab-arrow"
TASKS = ("segmentation", "translation")
ENCODINGS = ("png", "raw")
DTYPES = ("uint8", "uint16", "float32")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DatasetError(ValueError):
    """Bad dataset input or a damaged dataset; the message names the file, shard, sample or field."""


@dataclass(frozen=True)
class ModalitySpec:
    dtype: str  # uint8 | uint16 | float32
    channels: int
    encoding: str = "raw"  # raw (bytes of a [H, W, C] array, zstd in Parquet) | png (lossless, 16-bit for uint16)
    # model input = (value * scale - mean) / std, per channel; 1-channel modalities are replicated to 3 channels
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    unit: str | None = None  # e.g. "mm" for depth

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise DatasetError(f"modality dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.encoding not in ENCODINGS:
            raise DatasetError(f"modality encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.encoding == "png" and (self.dtype == "float32" or self.channels not in (1, 3)):
            raise DatasetError(f"png stores uint8/uint16 images with 1 or 3 channels, not {self.dtype} x "
                               f"{self.channels}; use encoding 'raw'")


def rgb_spec(encoding: str = "raw") -> ModalitySpec:
    """8-bit colour, ImageNet-normalised (the references' RGB input)."""
    return ModalitySpec("uint8", 3, encoding, scale=1 / 255, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def depth_mm_spec(encoding: str = "raw") -> ModalitySpec:
    """Depth in uint16 millimetres, as NYUDv2; the model sees depth * 1/5000 (the references' depth scale)."""
    return ModalitySpec("uint16", 1, encoding, scale=1 / 5000, unit="mm")


def gray_spec(encoding: str = "raw", channels: int = 1) -> ModalitySpec:
    """Any 8-bit image modality scaled to [0, 1] (Taskonomy's normals, shading, edges, ...)."""
    return ModalitySpec("uint8", channels, encoding, scale=1 / 255, mean=(0.0,) * channels, std=(1.0,) * channels)


@dataclass(frozen=True)
class LabelSpec:
    classes: tuple[str, ...]
    ignore_index: int = 255
    dtype: str = "uint8"
    encoding: str = "raw"

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class ShardInfo:
    file: str
    rows: int
    bytes: int
    sha256: str


@dataclass
class Manifest:
    name: str
    task: str
    modalities: dict[str, ModalitySpec]
    label: LabelSpec | None = None
    target: str | None = None  # translation: the modality to predict
    splits: dict[str, list[ShardInfo]] = field(default_factory=dict)
    image_size: tuple[int, int] | None = None  # (H, W) when every sample shares it
    source: dict[str, Any] = field(default_factory=dict)  # converter / generator details
    schema_version: int = SCHEMA_VERSION
    format: str = FORMAT_NAME

    def __post_init__(self):
        if self.task not in TASKS:
            raise DatasetError(f"task must be one of {TASKS}, got {self.task!r}")
        if not self.modalities:
            raise DatasetError("a dataset needs at least one modality")
        if self.task == "segmentation" and self.label is None:
            raise DatasetError("a segmentation dataset needs a label spec (classes, ignore_index)")
        if self.task == "translation" and self.target not in self.modalities:
            raise DatasetError(f"translation target {self.target!r} is not one of {list(self.modalities)}")

    def rows(self, split: str | Sequence[str]) -> int:
        return sum(shard.rows for shard in self.shards(split))

    def shards(self, split: str | Sequence[str]) -> list[ShardInfo]:
        """A split's shards; for a list of splits, their union (in the order given)."""
        names = [split] if isinstance(split, str) else list(split)
        if not names or len(set(names)) != len(names):
            raise DatasetError(f"expected a split or a list of distinct splits, got {names}")
        for name in names:
            if name not in self.splits:
                raise DatasetError(f"dataset {self.name!r} has no split {name!r}; it has {sorted(self.splits)}")
        return [shard for name in names for shard in self.splits[name]]

    @property
    def digest(self) -> str:
        """sha256 of the manifest as written (it lists every shard's checksum): names the exact dataset."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def to_json(self) -> str:
        data = asdict(self)
        data["image_size"] = list(self.image_size) if self.image_size else None
        return json.dumps(data, indent=2) + "\n"  # field order, modalities in their given order

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = MANIFEST_NAME) -> Manifest:
        version = data.get("schema_version")
        if data.get("format") != FORMAT_NAME:
            raise DatasetError(f"{origin}: not a fusionlab dataset manifest (format {data.get('format')!r})")
        if version != SCHEMA_VERSION:
            raise DatasetError(f"{origin}: unknown schema_version {version!r}; this fusionlab reads version "
                               f"{SCHEMA_VERSION}")
        try:
            modalities = {name: ModalitySpec(**{**spec, "mean": tuple(spec["mean"]), "std": tuple(spec["std"])})
                          for name, spec in data["modalities"].items()}
            label = data.get("label")
            label = LabelSpec(**{**label, "classes": tuple(label["classes"])}) if label else None
            splits = {split: [ShardInfo(**shard) for shard in shards] for split, shards in data["splits"].items()}
            for split, shards in splits.items():
                for shard in shards:
                    check_shard_file(shard.file, f"{origin}: split {split!r}")
            size = data.get("image_size")
            return cls(name=data["name"], task=data["task"], modalities=modalities, label=label,
                       target=data.get("target"), splits=splits, image_size=tuple(size) if size else None,
                       source=data.get("source", {}), schema_version=version, format=data["format"])
        except (KeyError, TypeError) as error:
            raise DatasetError(f"{origin}: malformed manifest ({type(error).__name__}: {error})") from None

    @classmethod
    def load(cls, root: str | os.PathLike) -> Manifest:
        path = Path(root) / MANIFEST_NAME
        if not path.is_file():
            raise DatasetError(f"{root}: no {MANIFEST_NAME}; not a fusionlab dataset directory")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise DatasetError(f"{path}: invalid JSON ({error})") from None
        manifest = cls.from_dict(data, origin=str(path))
        manifest.check_confined(root, origin=str(path))
        return manifest

    def check_confined(self, root: str | os.PathLike, origin: str = MANIFEST_NAME) -> None:
        """Every shard, symlinks followed, lies inside ``root``: a manifest cannot make fusionlab read other files."""
        inside = Path(root).resolve()
        for split, shards in self.splits.items():
            for shard in shards:
                resolved = (inside / shard.file).resolve()
                if not resolved.is_relative_to(inside):
                    raise DatasetError(f"{origin}: split {split!r} shard file {shard.file!r} resolves to {resolved}, "
                                       f"outside the dataset directory {inside}")


def check_shard_file(file: Any, where: str) -> None:
    """A shard's ``file`` is a relative path that stays below the dataset directory (checked as text; symlinks are
    resolved by ``Manifest.check_confined``)."""
    if not isinstance(file, str) or not file:
        raise DatasetError(f"{where} shard file must be a non-empty relative path, got {file!r}")
    if PurePosixPath(file).is_absolute() or PureWindowsPath(file).is_absolute() or file.startswith(("/", "\\")):
        raise DatasetError(f"{where} shard file {file!r} is an absolute path; shard files are relative to the "
                           f"dataset directory")
    if ".." in PurePosixPath(file.replace("\\", "/")).parts:
        raise DatasetError(f"{where} shard file {file!r} contains '..'; shard files stay inside the dataset "
                           f"directory")
