"""Read a fusionlab dataset: the manifest, its shards (checked), and rows decoded into Samples."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .codec import decode
from .manifest import DatasetError, LabelSpec, Manifest
from .sample import Sample
from .writer import sha256_of


class DatasetReader:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset directory not found: {self.root}")
        self.manifest = Manifest.load(self.root)

    def shard_paths(self, split: str | Sequence[str]) -> list[Path]:
        paths = [self.root / shard.file for shard in self.manifest.shards(split)]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise DatasetError(f"{self.root}: shard files listed in the manifest are missing: {missing}")
        return paths

    def verify(self, split: str | None = None, *, labels: bool = True) -> None:
        """Check every shard's size, sha256 and row count against the manifest (the sizes of all shards first: a
        truncated or swapped file is refused before any hashing); with ``labels``, also decode every label and check
        it against the classes."""
        names = [split] if split else sorted(self.manifest.splits)
        shards = [(shard, path) for name in names
                  for shard, path in zip(self.manifest.shards(name), self.shard_paths(name), strict=True)]
        for shard, path in shards:
            size = path.stat().st_size
            if size != shard.bytes:
                raise DatasetError(f"shard {path}: {size} bytes, the manifest says {shard.bytes}")
        for shard, path in shards:
            digest = sha256_of(path)
            if digest != shard.sha256:
                raise DatasetError(f"shard {path}: checksum mismatch (sha256 {digest}, the manifest says "
                                   f"{shard.sha256})")
            rows = self._parquet(path).metadata.num_rows
            if rows != shard.rows:
                raise DatasetError(f"shard {path}: {rows} rows, the manifest says {shard.rows}")
        if labels and self.manifest.label is not None:
            for _, path in shards:
                self._verify_labels(path)

    def _verify_labels(self, path: Path) -> None:
        spec = self.manifest.label
        where = f"shard {path.name}"
        for batch in self._parquet(path).iter_batches(batch_size=32, columns=["sample_id", "height", "width",
                                                                               "label"]):
            for row in batch.to_pylist():
                sample_where = f"{where}, sample {row['sample_id']!r}"
                label = decode(row["label"], spec.encoding, spec.dtype, 1, row["height"], row["width"],
                               where=f"{sample_where}, label")
                check_label(label, spec, sample_where)

    @staticmethod
    def _parquet(path: Path) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as error:
            raise DatasetError(f"shard {path}: unreadable Parquet ({error})") from None

    def read_shards(self, split: str | Sequence[str]) -> list[tuple[Path, pa.Table]]:
        """Each shard of a split (or of a list of splits, in that order) with its rows, still encoded
        (memory-mapped)."""
        tables = []
        for path in self.shard_paths(split):
            try:
                tables.append((path, pq.read_table(path, memory_map=True)))
            except (pa.ArrowInvalid, OSError) as error:
                raise DatasetError(f"shard {path}: unreadable Parquet ({error})") from None
        return tables

    def read_table(self, split: str | Sequence[str]) -> pa.Table:
        """All rows of a split (or of a list of splits, in that order), still encoded (memory-mapped)."""
        return pa.concat_tables([table for _, table in self.read_shards(split)])

    def iter_samples(self, split: str) -> Iterator[Sample]:
        for path in self.shard_paths(split):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=32):
                for row in batch.to_pylist():
                    yield decode_row(row, self.manifest, where=f"shard {path.name}")


def decode_row(row: dict, manifest: Manifest, where: str = "dataset") -> Sample:
    """Turn one encoded row (a dict of column values) into a Sample of arrays."""
    sample_where = f"{where}, sample {row['sample_id']!r}"
    height, width = row["height"], row["width"]
    modalities = {}
    for name, spec in manifest.modalities.items():
        modalities[name] = decode(row[name], spec.encoding, spec.dtype, spec.channels, height, width,
                                  where=f"{sample_where}, modality {name!r}")
    label = None
    if manifest.label is not None:
        spec = manifest.label
        label = decode(row["label"], spec.encoding, spec.dtype, 1, height, width,
                       where=f"{sample_where}, label")[:, :, 0]
        check_label(label, spec, sample_where)
    return Sample(row["sample_id"], row["split"], modalities, label)


def check_label(label: np.ndarray, spec: LabelSpec, where: str) -> None:
    """Every value is a class index (``< num_classes``) or the ignore index; else a DatasetError naming the values.

    One vectorised pass over the map: a stray value would otherwise index past the loss's classes (or be skipped
    silently when a crop misses it) and break the confusion matrix."""
    bad = (label >= spec.num_classes) & (label != spec.ignore_index)
    if np.issubdtype(label.dtype, np.signedinteger):
        bad |= (label < 0) & (label != spec.ignore_index)
    if bad.any():
        values = np.unique(label[bad])
        shown = ", ".join(str(v) for v in values[:8]) + (f" (+{values.size - 8} more)" if values.size > 8 else "")
        raise DatasetError(f"{where}: label value(s) {shown} in {int(bad.sum())} pixel(s); the dataset has "
                           f"{spec.num_classes} classes (0..{spec.num_classes - 1}) and ignore index "
                           f"{spec.ignore_index}")
