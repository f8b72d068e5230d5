"""One copy of a split per node: its encoded rows written once as an uncompressed Arrow IPC file in a node-local
directory, which every process of the node memory-maps.

``pq.read_table(memory_map=True)`` maps the Parquet file but decompresses its (zstd) pages onto the heap: every
process reading a split that way holds a private copy of it (a 300 MB split took ~400 MB per process). An IPC file
without compression is read zero-copy: the table's buffers point into the mapping, whose pages the kernel's page
cache shares between every process that maps the file, and which it can drop and reread under memory pressure.

The file is named by the manifest's digest (which lists every shard's sha256) and the split, so another dataset, or
a rewritten one, never reads a stale copy. The first process on the node to ask writes it under an exclusive lock
(a temporary file renamed into place); the others wait on the lock and map what it wrote.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .manifest import DatasetError
from .reader import DatasetReader

SUFFIX = ".arrow"


def default_cache_dir() -> Path:
    """``$FUSIONLAB_NODE_CACHE``, else ``fusionlab-node-cache`` in the temporary directory (node-local)."""
    return Path(os.environ.get("FUSIONLAB_NODE_CACHE") or Path(tempfile.gettempdir()) / "fusionlab-node-cache")


def cache_name(reader: DatasetReader, split: str | Sequence[str]) -> str:
    splits = [split] if isinstance(split, str) else list(split)
    key = hashlib.sha256("\0".join([reader.manifest.digest, *splits]).encode()).hexdigest()[:32]
    readable = re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{reader.manifest.name}-{'+'.join(splits)}")[:80]
    return f"{readable}-{key}{SUFFIX}"


def shared_split(reader: DatasetReader, split: str | Sequence[str], cache_dir: str | os.PathLike) -> Path:
    """The node's IPC copy of ``split``'s encoded rows (every shard, in order), written now if no process of the
    node has written it."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / cache_name(reader, split)
    if path.is_file():
        return path
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if not path.is_file():
            fd, staged = tempfile.mkstemp(dir=cache_dir, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    _write_rows(reader.shard_paths(split), out)
                os.chmod(staged, 0o644)  # mkstemp's 0600 would keep the node's other users from reading it
                os.replace(staged, path)
            except BaseException:
                Path(staged).unlink(missing_ok=True)
                raise
            gc.collect()  # the Parquet reader's first use leaves its row groups in a reference cycle: free them now
    return path


def _write_rows(shards: Sequence[Path], out) -> None:
    """The shards' rows, in order, as one IPC file: a row group at a time (the writer holds no more of the split)."""
    writer = None
    try:
        for shard in shards:
            try:
                parquet = pq.ParquetFile(shard, memory_map=True)
                for group in range(parquet.num_row_groups):
                    table = parquet.read_row_group(group)
                    writer = writer or pa.ipc.new_file(out, table.schema)
                    writer.write_table(table)
            except (pa.ArrowInvalid, OSError) as error:
                raise DatasetError(f"shard {shard}: unreadable Parquet ({error})") from None
        if writer is None and shards:  # no rows: the file still holds the columns
            writer = pa.ipc.new_file(out, pq.read_schema(shards[0]))
    finally:
        if writer is not None:
            writer.close()


def mapped_table(path: str | os.PathLike) -> pa.Table:
    """The IPC file's table, its buffers in the file's memory mapping (nothing copied onto the heap)."""
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()
