"""The dataset manifest: what a fusionlab dataset directory holds, written last and read first.

A dataset is a directory of Parquet shards (``<split>-<index>.parquet``) plus ``manifest.json``. One row per sample:
``sample_id``, ``split``, ``height``, ``width``, one binary column per modality and ``label`` (segmentation). All
images of a sample share its height and width.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
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
        check_splits(self.splits)

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
    def from_dict(cls, data: Any, origin: str = MANIFEST_NAME) -> Manifest:
        """The manifest of a parsed ``manifest.json``, checked against the schema first (``check_manifest_data``):
        a field of the wrong type or value is a DatasetError naming ``origin``, the field's path and the value."""
        check_manifest_data(data, origin)
        try:
            modalities = {name: ModalitySpec(**{**spec, "mean": tuple(spec.get("mean", (0.0,))),
                                                "std": tuple(spec.get("std", (1.0,)))})
                          for name, spec in data["modalities"].items()}
            label = data.get("label")
            label = LabelSpec(**{**label, "classes": tuple(label["classes"])}) if label else None
            splits = {split: [ShardInfo(**shard) for shard in shards] for split, shards in data["splits"].items()}
            size = data.get("image_size")
            return cls(name=data["name"], task=data["task"], modalities=modalities, label=label,
                       target=data.get("target"), splits=splits, image_size=tuple(size) if size else None,
                       source=data.get("source") or {}, schema_version=data["schema_version"], format=data["format"])
        except (KeyError, TypeError) as error:  # the schema check should leave none; kept as a last guard
            raise DatasetError(f"{origin}: malformed manifest ({type(error).__name__}: {error})") from None
        except DatasetError as error:
            raise DatasetError(f"{origin}: {error}") from None

    @classmethod
    def load(cls, root: str | os.PathLike) -> Manifest:
        path = Path(root) / MANIFEST_NAME
        if not path.is_file():
            raise DatasetError(f"{root}: no {MANIFEST_NAME}; not a fusionlab dataset directory")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, nesting
            raise DatasetError(f"{path}: invalid JSON ({error})") from None
        except OSError as error:
            raise DatasetError(f"{path}: unreadable ({error.strerror or error})") from None
        manifest = cls.from_dict(data, origin=str(path))
        manifest.check_confined(root, origin=str(path))
        return manifest

    def check_confined(self, root: str | os.PathLike, origin: str = MANIFEST_NAME) -> None:
        """Every shard, symlinks followed, lies inside ``root``: a manifest cannot make fusionlab read other files; and
        no two entries name the same file through a link."""
        inside = Path(root).resolve()
        seen: dict[Path, str] = {}
        for split, shards in self.splits.items():
            for index, shard in enumerate(shards):
                resolved = (inside / shard.file).resolve()
                if not resolved.is_relative_to(inside):
                    raise DatasetError(f"{origin}: split {split!r} shard file {shard.file!r} resolves to {resolved}, "
                                       f"outside the dataset directory {inside}")
                where = f"splits.{split}[{index}]"
                first = seen.setdefault(resolved, where)
                if first != where:
                    raise DatasetError(f"{origin}: {where} (file {shard.file!r}) is the shard {first} lists already "
                                       f"({resolved}): each shard belongs to one split, once")


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


# --- the schema a manifest.json is checked against at load ---------------------------------------------------------

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Row columns besides the modalities: no modality may take one of these names.
ROW_COLUMNS = ("sample_id", "split", "height", "width", "label")
LABEL_DTYPES = {"uint8": 255, "uint16": 65535}  # -> the largest value (ignore index)
_TOP = {"format": True, "schema_version": True, "name": True, "task": True, "modalities": True, "splits": True,
        "label": False, "target": False, "image_size": False, "source": False}
_MODALITY = {"dtype": True, "channels": True, "encoding": False, "scale": False, "mean": False, "std": False,
             "unit": False}
_LABEL = {"classes": True, "ignore_index": False, "dtype": False, "encoding": False}
_SHARD = {"file": True, "rows": True, "bytes": True, "sha256": True}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _child(path: str, key: str) -> str:
    step = f".{key}" if _NAME.match(key) else f"[{key!r}]"
    return (path + step) if path else step.lstrip(".")


class _Schema:
    """Type checks that raise a DatasetError naming the manifest file, the field's path and the value."""

    def __init__(self, origin: str):
        self.origin = origin

    def fail(self, path: str, expected: str, value: Any) -> None:
        raise DatasetError(f"{self.origin}: {path} must be {expected}, got {_shown(value)}")

    def fields(self, value: Any, path: str, known: dict[str, bool]) -> dict:
        """A JSON object with the required fields and no others."""
        if not isinstance(value, dict):
            self.fail(path or "the manifest", "a JSON object", value)
        for key in value:
            if key not in known:
                raise DatasetError(f"{self.origin}: unknown field {_child(path, str(key))}; "
                                   f"{path or 'the manifest'} has the fields {sorted(known)}")
        for key, required in known.items():
            if required and key not in value:
                raise DatasetError(f"{self.origin}: {_child(path, key)} is missing")
        return value

    def string(self, value: Any, path: str, choices: Sequence[str] | None = None) -> str:
        if not isinstance(value, str) or not value:
            self.fail(path, "a non-empty string" if choices is None else f"one of {list(choices)}", value)
        if choices is not None and value not in choices:
            self.fail(path, f"one of {list(choices)}", value)
        return value

    def integer(self, value: Any, path: str, minimum: int, maximum: int | None = None) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum or (
                maximum is not None and value > maximum):
            bound = f" in [{minimum}, {maximum}]" if maximum is not None else f" >= {minimum}"
            self.fail(path, f"an integer{bound}", value)
        return value

    def number(self, value: Any, path: str, positive: bool = False) -> float:
        if (not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value)
                or (positive and value <= 0)):
            self.fail(path, "a finite number" + (" > 0" if positive else ""), value)
        return value

    def numbers(self, value: Any, path: str, channels: int, positive: bool = False) -> None:
        lengths = sorted({1, channels})
        if not isinstance(value, list) or len(value) not in lengths:
            self.fail(path, f"a list of {' or '.join(map(str, lengths))} number(s) (one per channel, or one for "
                            f"all)", value)
        for index, item in enumerate(value):
            self.number(item, f"{path}[{index}]", positive)


def check_manifest_data(data: Any, origin: str = MANIFEST_NAME) -> None:
    """Check a parsed ``manifest.json`` against schema version 1: every field's type and value, the splits (at least
    one, none empty) and that no shard is listed twice, by file or by checksum. A DatasetError names ``origin``, the
    field's path (``splits.train[0].rows``) and the value."""
    schema = _Schema(origin)
    if not isinstance(data, dict):
        raise DatasetError(f"{origin}: a manifest is a JSON object (format {FORMAT_NAME!r}), got a JSON "
                           f"{_json_type(data)}: {_shown(data)}")
    if data.get("format") != FORMAT_NAME:
        raise DatasetError(f"{origin}: not a fusionlab dataset manifest (format {data.get('format')!r})")
    version = data.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise DatasetError(f"{origin}: unknown schema_version {version!r}; this fusionlab reads version "
                           f"{SCHEMA_VERSION}")
    schema.fields(data, "", _TOP)
    schema.string(data["name"], "name")
    schema.string(data["task"], "task", TASKS)
    modalities = data["modalities"]
    if not isinstance(modalities, dict) or not modalities:
        schema.fail("modalities", "a non-empty JSON object of modality specs", modalities)
    for name, spec in modalities.items():
        path = _child("modalities", name)
        if not name or name in ROW_COLUMNS:
            schema.fail("modalities", f"named other than {list(ROW_COLUMNS)} (the rows' own columns)", name)
        _check_modality(schema, spec, path)
    if data.get("label") is not None:
        _check_label(schema, data["label"])
    if data.get("target") is not None:
        schema.string(data["target"], "target")
    size = data.get("image_size")
    if size is not None:
        if not isinstance(size, list) or len(size) != 2:
            schema.fail("image_size", "null or [height, width]", size)
        schema.integer(size[0], "image_size[0]", 1)
        schema.integer(size[1], "image_size[1]", 1)
    if data.get("source") is not None and not isinstance(data["source"], dict):
        schema.fail("source", "a JSON object", data["source"])
    splits = data["splits"]
    if not isinstance(splits, dict):
        schema.fail("splits", "a JSON object of split name -> list of shards", splits)
    if not splits:
        raise DatasetError(f"{origin}: splits is empty: a dataset lists at least one split with its shards")
    for split, shards in splits.items():
        path = _child("splits", split)
        if not isinstance(shards, list):
            schema.fail(path, "a list of shards", shards)
        for index, shard in enumerate(shards):
            where = f"{path}[{index}]"
            schema.fields(shard, where, _SHARD)
            check_shard_file(shard["file"], f"{origin}: split {split!r}")
            schema.integer(shard["rows"], f"{where}.rows", 0)
            schema.integer(shard["bytes"], f"{where}.bytes", 0)
            if not isinstance(shard["sha256"], str) or not _SHA256.match(shard["sha256"]):
                schema.fail(f"{where}.sha256", "64 lowercase hex digits", shard["sha256"])
    check_splits({split: [ShardInfo(**shard) for shard in shards] for split, shards in splits.items()}, origin)


def check_splits(splits: dict[str, list[ShardInfo]], origin: str = MANIFEST_NAME) -> None:
    """No split without shards, and no shard listed twice (the same file, or the same bytes under two names, in one
    split or two): its samples would be trained or scored twice per epoch, or sit in train and test at once."""
    seen: dict[str, str] = {}
    for split, shards in splits.items():
        if not shards:
            raise DatasetError(f"{origin}: split {split!r} lists no shards (splits.{split} is []); a split holds at "
                               f"least one shard: leave out a split without samples")
        for index, shard in enumerate(shards):
            where = f"splits.{split}[{index}]"
            for key, what in ((os.path.normpath(shard.file.replace("\\", "/")), "file"), (shard.sha256, "sha256")):
                first = seen.setdefault(f"{what}:{key}", where)
                if first != where:
                    value = shard.file if what == "file" else shard.sha256
                    raise DatasetError(f"{origin}: {where} lists the shard {first} lists already ({what} "
                                       f"{value!r}): each shard belongs to one split, once")


def _check_modality(schema: _Schema, spec: Any, path: str) -> None:
    schema.fields(spec, path, _MODALITY)
    dtype = schema.string(spec["dtype"], f"{path}.dtype", DTYPES)
    channels = schema.integer(spec["channels"], f"{path}.channels", 1)
    encoding = schema.string(spec.get("encoding", "raw"), f"{path}.encoding", ENCODINGS)
    if encoding == "png" and (dtype == "float32" or channels not in (1, 3)):
        schema.fail(f"{path}.encoding", f"'raw' for {dtype} x {channels} (png stores uint8/uint16 images with 1 or "
                                        f"3 channels)", encoding)
    schema.number(spec.get("scale", 1.0), f"{path}.scale", positive=True)
    schema.numbers(spec.get("mean", [0.0]), f"{path}.mean", channels)
    schema.numbers(spec.get("std", [1.0]), f"{path}.std", channels, positive=True)
    if spec.get("unit") is not None:
        schema.string(spec["unit"], f"{path}.unit")


def _check_label(schema: _Schema, spec: Any) -> None:
    schema.fields(spec, "label", _LABEL)
    classes = spec["classes"]
    if not isinstance(classes, list) or not classes:
        schema.fail("label.classes", "a non-empty list of class names", classes)
    for index, name in enumerate(classes):
        schema.string(name, f"label.classes[{index}]")
    dtype = schema.string(spec.get("dtype", "uint8"), "label.dtype", LABEL_DTYPES)
    schema.string(spec.get("encoding", "raw"), "label.encoding", ENCODINGS)
    schema.integer(spec.get("ignore_index", 255), "label.ignore_index", 0, LABEL_DTYPES[dtype])


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)
