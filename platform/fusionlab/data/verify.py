"""Verify a dataset before a run trains on it: every shard's size, row count and sha256 against the manifest, and
that the manifest describes the rows (``DatasetReader.verify_rows``: every row's size against ``image_size``, its split
and sample_id; the first rows of every shard decoded as the manifest's dtypes, channels and encodings say).

Runs once on the driver, before the first epoch, on both training paths, so the manifest hash a run records
(``fusionlab.manifest_sha256``) names the bytes it actually read; the run's ``fusionlab.data_verified`` tag says what
was checked. Hashing is the cost: 0.7-1.4 GB/s on one core of this 2-core machine (SHA-NI; the range is other load),
so 8-15 s for the 11 GB Cityscapes when the files are in the page cache, the disk's read speed when they are not;
decompressing each shard's first row group for the row check adds about as much again (see ``verify_rows``).
Labels are checked as shards are decoded (``check_label``), not here. A process that trains the same unchanged files
again (the cells of a local grid) reuses its verdict, keyed on the manifest and each shard's size, mtime and inode.
"""

from __future__ import annotations

import os
import time

from .reader import DatasetReader

VERIFIED_TAG = "fusionlab.data_verified"

_verified: dict[tuple, str] = {}


def verify_for_training(path: str | os.PathLike) -> str:
    """Refuse (DatasetError naming the shard and what differs) a dataset whose shards do not match its manifest;
    returns what was checked, the value of the run's ``fusionlab.data_verified`` tag."""
    if "://" in str(path):
        return f"skipped: {str(path).split('://')[0]}:// storage is read by Ray Data as it is, without checksums"
    reader = DatasetReader(path)
    shards = _shards(reader)
    key = _key(reader, shards)
    if key not in _verified:
        start = time.perf_counter()
        reader.verify(labels=False)
        size = sum(shard.bytes for shard in shards)
        _verified[key] = (f"sizes, row counts and sha256 of {len(shards)} shards ({size / 2**20:.1f} MiB) match the "
                          f"manifest, and it describes their rows; checked in {time.perf_counter() - start:.1f} s")
    return _verified[key]


def verification_record(path: str | os.PathLike) -> dict | None:
    """The dataset verified here (``verify_for_training``), as a record a launch hands its trials: a trial in a
    fresh process (on any node) trusts it while the manifest and every shard's size, mtime and inode are unchanged,
    instead of hashing the whole dataset again per cell. None for storage that is not verified."""
    if "://" in str(path):
        return None
    verdict = verify_for_training(path)
    reader = DatasetReader(path)
    key = [list(part) if isinstance(part, tuple) else part for part in _key(reader, _shards(reader))]
    return {"key": key, "verdict": verdict}


def trust_verification(record: dict | None) -> None:
    """Take a launch's ``verification_record``: ``verify_for_training`` finds it, if the files are still those."""
    if record:
        _verified[tuple(tuple(part) if isinstance(part, list) else part for part in record["key"])] = (
            f"{record['verdict']} (at the launch, before this trial)")


def _shards(reader: DatasetReader) -> list:
    return [shard for name in sorted(reader.manifest.splits) for shard in reader.manifest.shards(name)]


def _key(reader: DatasetReader, shards: list) -> tuple:
    """What a verdict holds for: the dataset's place, its manifest, and each shard's size, mtime and inode."""
    return (str(reader.root.resolve()), reader.manifest.digest, *(_identity(reader.root / s.file) for s in shards))


def _identity(path: os.PathLike) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:  # missing: verify says which
        return None
    return stat.st_size, stat.st_mtime_ns, stat.st_ino
