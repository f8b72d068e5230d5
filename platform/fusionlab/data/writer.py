"""Streaming, atomic, deterministic writer of sharded Parquet datasets.

Rows are validated, encoded and buffered per split; a shard is flushed when its encoded bytes reach the bound.
Everything goes to a hidden staging directory beside the destination (``fusionlab.staging``); ``manifest.json`` is
written last and the directory is renamed into place, so an interrupted or failed write leaves no dataset behind.
An existing destination is replaced only when asked (``overwrite``) and only when it is a fusionlab dataset: never a
file, nor a directory holding anything but a dataset's manifest and shards. The same samples in the same order give
byte-identical shards.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fusionlab.staging import Staging, existing_entries

from .codec import as_hwc, encode
from .manifest import MANIFEST_NAME, DatasetError, Manifest, ShardInfo
from .sample import Sample

DEFAULT_MAX_SHARD_BYTES = 256 * 2**20
ROW_GROUP_ROWS = 32
# A row group is what a reader decodes at once (Arrow takes ~4x its bytes while decoding a binary column): at most
# this many bytes of encoded rows, at least one row.
ROW_GROUP_BYTES = 32 * 2**20
_SPLIT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def row_group_rows(rows: int, nbytes: int) -> int:
    """Rows per row group for ``rows`` rows of ``nbytes``: ``ROW_GROUP_ROWS``, fewer where that would pass
    ``ROW_GROUP_BYTES`` (two Cityscapes rows of 12 MiB), never none."""
    per_row = max(1, nbytes // max(1, rows))
    return max(1, min(ROW_GROUP_ROWS, ROW_GROUP_BYTES // per_row))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def arrow_schema(manifest: Manifest) -> pa.Schema:
    fields = [pa.field("sample_id", pa.string()), pa.field("split", pa.string()),
              pa.field("height", pa.int32()), pa.field("width", pa.int32())]
    fields += [pa.field(name, pa.binary()) for name in manifest.modalities]
    if manifest.label is not None:
        fields.append(pa.field("label", pa.binary()))
    description = replace(manifest, splits={}).to_json()  # name, task, classes, modalities, version
    return pa.schema(fields, metadata={b"fusionlab.dataset": description.encode()})


class DatasetWriter:
    """``with DatasetWriter(out, manifest) as writer: writer.write(sample)``; the manifest's splits are filled in."""

    def __init__(self, out: str | os.PathLike, manifest: Manifest, *, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                 overwrite: bool = False):
        self.out = Path(out)
        check_out(self.out, overwrite)
        self.manifest = replace(manifest, splits={}, image_size=None)
        self.max_shard_bytes = max_shard_bytes
        self.overwrite = overwrite
        self.schema = arrow_schema(self.manifest)
        self._staging = Staging(self.out)
        self.tmp = self._staging.path
        self._buffers: dict[str, list[dict]] = {}
        self._buffer_bytes: dict[str, int] = {}
        self._seen_ids: set[str] = set()
        self._sizes: set[tuple[int, int]] = set()
        self._closed = False

    def __enter__(self) -> DatasetWriter:
        self._staging.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- rows ------------------------------------------------------------------------------------------------
    def write(self, sample: Sample) -> None:
        where = f"sample {sample.sample_id!r}"
        if sample.sample_id in self._seen_ids:
            raise DatasetError(f"{where}: duplicate sample_id")
        if not _SPLIT_NAME.match(sample.split):
            raise DatasetError(f"{where}: split name {sample.split!r} must match {_SPLIT_NAME.pattern}")
        height, width = self._check_shapes(sample, where)
        row = {"sample_id": sample.sample_id, "split": sample.split, "height": height, "width": width}
        for name, spec in self.manifest.modalities.items():
            array = as_hwc(sample.modalities[name])
            if array.dtype != np.dtype(spec.dtype) or array.shape[2] != spec.channels:
                raise DatasetError(f"{where}: modality {name!r} is {array.dtype} with {array.shape[2]} channels, "
                                   f"expected {spec.dtype} with {spec.channels}")
            row[name] = encode(array, spec.encoding)
        if self.manifest.label is not None:
            row["label"] = encode(self._checked_label(sample, where), self.manifest.label.encoding)
        self._seen_ids.add(sample.sample_id)
        self._sizes.add((height, width))
        size = sum(len(v) for v in row.values() if isinstance(v, bytes))
        if self._buffer_bytes.get(sample.split, 0) + size > self.max_shard_bytes:
            self._flush(sample.split)  # keep shards within the bound (a single larger row gets its own shard)
        self._buffers.setdefault(sample.split, []).append(row)
        self._buffer_bytes[sample.split] = self._buffer_bytes.get(sample.split, 0) + size

    def _check_shapes(self, sample: Sample, where: str) -> tuple[int, int]:
        expected = set(self.manifest.modalities)
        missing, extra = sorted(expected - set(sample.modalities)), sorted(set(sample.modalities) - expected)
        if missing or extra:
            raise DatasetError(f"{where}: modalities {sorted(sample.modalities)} do not match the dataset's "
                               f"{sorted(expected)} (missing {missing}, unexpected {extra})")
        if self.manifest.label is not None and sample.label is None:
            raise DatasetError(f"{where}: missing label")
        shapes = {name: tuple(array.shape[:2]) for name, array in sample.modalities.items()}
        if sample.label is not None:
            shapes["label"] = tuple(sample.label.shape[:2])
        if len(set(shapes.values())) != 1:
            described = ", ".join(f"{name} {h}x{w}" for name, (h, w) in shapes.items())
            raise DatasetError(f"{where}: image sizes disagree between modalities ({described})")
        return next(iter(shapes.values()))

    def _checked_label(self, sample: Sample, where: str) -> np.ndarray:
        spec = self.manifest.label
        label = sample.label
        if label.ndim != 2:
            raise DatasetError(f"{where}: label must be [H, W], got shape {list(label.shape)}")
        if label.dtype != np.dtype(spec.dtype):
            raise DatasetError(f"{where}: label dtype {label.dtype}, expected {spec.dtype}")
        bad = np.unique(label[(label >= spec.num_classes) & (label != spec.ignore_index)])
        if bad.size:
            raise DatasetError(f"{where}: label values {bad[:10].tolist()} are outside the {spec.num_classes} "
                               f"classes [0, {spec.num_classes - 1}] and not the ignore index {spec.ignore_index}")
        return label

    # -- shards ----------------------------------------------------------------------------------------------
    def _flush(self, split: str) -> None:
        rows = self._buffers.pop(split, [])
        self._buffer_bytes.pop(split, None)
        if not rows:
            return
        shards = self.manifest.splits.setdefault(split, [])
        name = f"{split}-{len(shards):05d}.parquet"
        path = self.tmp / name
        table = pa.Table.from_pylist(rows, schema=self.schema)
        compression = {field.name: "zstd" for field in self.schema}
        for modality, spec in self.manifest.modalities.items():
            if spec.encoding == "png":
                compression[modality] = "none"  # already compressed
        pq.write_table(table, path, row_group_size=row_group_rows(table.num_rows, table.nbytes),
                       compression=compression)
        shards.append(ShardInfo(file=name, rows=len(rows), bytes=path.stat().st_size, sha256=sha256_of(path)))

    def close(self) -> Manifest:
        if self._closed:
            return self.manifest
        try:
            for split in sorted(self._buffers):
                self._flush(split)
            if not self.manifest.splits:
                raise DatasetError(f"{self.out}: no samples were written")
            self.manifest.image_size = next(iter(self._sizes)) if len(self._sizes) == 1 else None
            (self.tmp / MANIFEST_NAME).write_text(self.manifest.to_json())
            check_out(self.out, self.overwrite)  # it may have appeared while writing
            self._staging.commit()
        finally:
            self.abort()  # removes the staging directory unless it was committed
        return self.manifest

    def abort(self) -> None:
        self._closed = True
        self._staging.abort()


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` this writer may not replace: a file or link, an existing dataset unless ``overwrite``, and
    always a directory that is not a fusionlab dataset (no manifest of fusionlab's format, or files it does not
    list). Called before any work is done."""
    entries = existing_entries(out, DatasetError)
    if not entries:
        return
    try:
        manifest = Manifest.load(out)
    except DatasetError as error:
        raise DatasetError(f"{out} exists and is not a fusionlab dataset ({error}); --overwrite replaces only a "
                           f"fusionlab dataset: choose another --out") from None
    listed = {MANIFEST_NAME, *(shard.file for shards in manifest.splits.values() for shard in shards)}
    foreign = [name for name in entries if name not in listed]
    if foreign:
        raise DatasetError(f"{out} holds files that are not part of its dataset ({', '.join(foreign[:5])}); "
                           f"--overwrite replaces only a fusionlab dataset: choose another --out")
    if not overwrite:
        raise DatasetError(f"{out} already exists (a fusionlab dataset); choose another --out or pass --overwrite "
                           f"to replace it")

