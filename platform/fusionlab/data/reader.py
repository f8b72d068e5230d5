"""Read a fusionlab dataset: the manifest, its shards (checked), and rows decoded into Samples."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .codec import decode
from .manifest import DatasetError, LabelSpec, Manifest
from .sample import Sample
from .writer import sha256_of

SAMPLED_ROWS = 4  # verify_rows decodes this many rows at the start of every shard
# The small columns verify_rows reads for every row, and the Arrow types each column may have.
ROW_FACTS = {"sample_id": "string", "split": "string", "height": "integer", "width": "integer"}
_KINDS = {"string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
          "integer": pa.types.is_integer,
          "binary": lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t)}


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
        truncated or swapped file is refused before any hashing), then that the manifest describes the rows
        (``verify_rows``); with ``labels``, also decode every label and check it against the classes."""
        names = [split] if split else sorted(self.manifest.splits)
        shards = [(name, shard, path) for name in names
                  for shard, path in zip(self.manifest.shards(name), self.shard_paths(name), strict=True)]
        for _, shard, path in shards:
            size = path.stat().st_size
            if size != shard.bytes:
                raise DatasetError(f"shard {path}: {size} bytes, the manifest says {shard.bytes}")
        for _, shard, path in shards:
            digest = sha256_of(path)
            if digest != shard.sha256:
                raise DatasetError(f"shard {path}: checksum mismatch (sha256 {digest}, the manifest says "
                                   f"{shard.sha256})")
            rows = self._parquet(path).metadata.num_rows
            if rows != shard.rows:
                raise DatasetError(f"shard {path}: {rows} rows, the manifest says {shard.rows}")
        self.verify_rows([(name, path) for name, _, path in shards])
        if labels and self.manifest.label is not None:
            for _, _, path in shards:
                self._verify_labels(path)

    def verify_rows(self, shards: Sequence[tuple[str, Path]], sampled: int = SAMPLED_ROWS) -> None:
        """That the manifest describes the rows of each ``(split, shard path)``; a DatasetError names the shard, the
        sample, the field and both values.

        Every row (its four small columns, read alone): a positive height and width, equal to ``image_size`` where
        the manifest declares one; the split the shard is listed under; a sample_id no other row has. The shard's
        columns and their types. The first ``sampled`` rows of every shard, decoded as the manifest's modalities and
        label say (raw: H*W*C*itemsize bytes; png: that size, dtype and channel count): what a manifest declares
        of its images (dtype, channels, encoding) holds for all of a writer's rows or for none, so a few rows per
        shard catch a lie, and a shard from another dataset, without decoding the dataset. The label's values are
        checked where labels are decoded (``verify(labels=True)``, ``decode_row``), not here.

        Cost: those rows lie in the shard's first row group (``writer.row_group_rows``), which Parquet decompresses
        whole (the writer's image columns come out dictionary-encoded: one page per column chunk), so about one row
        group per shard, ~4x the sha256 time per byte read. Measured (warm page cache, this 2-core machine, min of
        5 ``timeit`` runs of ``DatasetReader(path).verify_rows(shards)``): the default synthetic dataset (64/16/16
        at 120x160, 3 shards, 5.7 MiB) 17 ms, sha256 of its shards 6 ms; 64/8/8 at 480x640 (3 shards, 66 MiB, 48 of
        the 80 rows in first row groups) 180 ms, sha256 76 ms. For 256 MiB shards of ~50 large rows (Cityscapes)
        that is roughly 2x the hashing time again, once per dataset and launch (``verify_for_training`` caches it).
        """
        ids: dict[str, Path] = {}
        for split, path in shards:
            parquet = self._parquet(path)
            self._check_columns(parquet, path)
            table = self._read(path, parquet.read, columns=list(ROW_FACTS))
            where = f"shard {path}"
            self._check_facts(table, split, where, ids, path)
            for row in self._sampled_rows(parquet, path, sampled):
                self._decode_sampled(row, where)

    def _decode_sampled(self, row: dict, where: str) -> None:
        """Decode each image of the row as the manifest describes it (the label's values are ``labels``' check)."""
        sample_where = f"{where}, sample {row['sample_id']!r}"
        images = [(name, spec.encoding, spec.dtype, spec.channels) for name, spec in self.manifest.modalities.items()]
        if self.manifest.label is not None:
            images.append(("label", self.manifest.label.encoding, self.manifest.label.dtype, 1))
        for name, encoding, dtype, channels in images:
            field = "label" if name == "label" else f"modality {name!r}"  # no modality is named label
            decode(row[name], encoding, dtype, channels, row["height"], row["width"], where=f"{sample_where}, {field}")

    def _check_columns(self, parquet: pq.ParquetFile, path: Path) -> None:
        schema = parquet.schema_arrow
        expected = {**ROW_FACTS, **{name: "binary" for name in self.manifest.modalities}}
        if self.manifest.label is not None:
            expected["label"] = "binary"
        for column, kind in expected.items():
            index = schema.get_field_index(column)
            if index < 0:
                raise DatasetError(f"shard {path}: no column {column!r}; the manifest's dataset has the columns "
                                   f"{list(expected)}")
            found = schema.field(index).type
            if not _KINDS[kind](found):
                raise DatasetError(f"shard {path}: column {column!r} is {found}, expected {kind}")

    def _check_facts(self, table: pa.Table, split: str, where: str, ids: dict[str, Path], path: Path) -> None:
        sample_ids = table.column("sample_id").to_pylist()
        for column in ROW_FACTS:
            nulls = table.column(column).is_null().to_pylist()
            if any(nulls):
                index = nulls.index(True)
                raise DatasetError(f"{where}, row {index} (sample {sample_ids[index]!r}): {column} is null")
        heights = table.column("height").to_numpy()
        widths = table.column("width").to_numpy()
        size = self.manifest.image_size
        for name, values in (("height", heights), ("width", widths)):
            bad = np.flatnonzero(values <= 0)
            if bad.size:
                raise DatasetError(f"{where}, sample {sample_ids[bad[0]]!r}: {name} {values[bad[0]]}, expected a "
                                   f"positive number of pixels")
        if size is not None:
            bad = np.flatnonzero((heights != size[0]) | (widths != size[1]))
            if bad.size:
                index = bad[0]
                raise DatasetError(f"{where}, sample {sample_ids[index]!r}: height x width {heights[index]}x"
                                   f"{widths[index]}, the manifest's image_size is {size[0]}x{size[1]} "
                                   f"({bad.size} of {len(sample_ids)} rows differ)")
        splits = table.column("split").to_pylist()
        for sample_id, row_split in zip(sample_ids, splits, strict=True):
            if row_split != split:
                raise DatasetError(f"{where}, sample {sample_id!r}: split {row_split!r}, the manifest lists the "
                                   f"shard under split {split!r}")
            if sample_id in ids:
                other = "twice in this shard" if ids[sample_id] == path else f"also in shard {ids[sample_id]}"
                raise DatasetError(f"{where}, sample {sample_id!r}: the sample_id is {other}; each sample is in a "
                                   f"dataset once")
            ids[sample_id] = path

    def _sampled_rows(self, parquet: pq.ParquetFile, path: Path, sampled: int) -> list[dict]:
        """The shard's first ``sampled`` rows (from its first row group, which Parquet decompresses whole)."""
        if parquet.metadata.num_rows == 0 or sampled < 1:
            return []
        batches = self._read(path, lambda: next(parquet.iter_batches(batch_size=sampled, row_groups=[0])))
        return batches.to_pylist()

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
    def _read(path: Path, read: Callable[..., pa.Table], *args, **kwargs) -> pa.Table:
        """``read(*args, **kwargs)``, a Parquet file's read; damaged content is a DatasetError naming the shard."""
        try:
            return read(*args, **kwargs)
        except (pa.ArrowException, OSError) as error:
            raise DatasetError(f"shard {path}: unreadable Parquet ({error})") from None

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


def decode_row(row: dict, manifest: Manifest, where: str = "dataset", names: Sequence[str] | None = None) -> Sample:
    """Turn one encoded row (a dict of column values) into a Sample of arrays: every modality, or those ``names``."""
    sample_where = f"{where}, sample {row['sample_id']!r}"
    height, width = row["height"], row["width"]
    modalities = {}
    for name, spec in manifest.modalities.items():
        if names is not None and name not in names:
            continue
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
