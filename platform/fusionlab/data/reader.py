"""Read a fusionlab dataset: the manifest, its shards (checked), and rows decoded into Samples."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .codec import decode
from .manifest import DatasetError, Manifest
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

    def verify(self, split: str | None = None) -> None:
        """Check every shard's size, sha256 and row count against the manifest."""
        for name in [split] if split else sorted(self.manifest.splits):
            for shard, path in zip(self.manifest.shards(name), self.shard_paths(name), strict=True):
                size = path.stat().st_size
                if size != shard.bytes:
                    raise DatasetError(f"shard {path}: {size} bytes, the manifest says {shard.bytes}")
                digest = sha256_of(path)
                if digest != shard.sha256:
                    raise DatasetError(f"shard {path}: checksum mismatch (sha256 {digest}, the manifest says "
                                       f"{shard.sha256})")
                rows = pq.ParquetFile(path).metadata.num_rows
                if rows != shard.rows:
                    raise DatasetError(f"shard {path}: {rows} rows, the manifest says {shard.rows}")

    def read_table(self, split: str | Sequence[str]) -> pa.Table:
        """All rows of a split (or of a list of splits, in that order), still encoded (memory-mapped)."""
        tables = []
        for path in self.shard_paths(split):
            try:
                tables.append(pq.read_table(path, memory_map=True))
            except (pa.ArrowInvalid, OSError) as error:
                raise DatasetError(f"shard {path}: unreadable Parquet ({error})") from None
        return pa.concat_tables(tables)

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
    return Sample(row["sample_id"], row["split"], modalities, label)
