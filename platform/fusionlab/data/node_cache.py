"""One copy of a split per node: its encoded rows written once as an uncompressed Arrow IPC file in a node-local
directory, which every process of the node memory-maps.

``pq.read_table(memory_map=True)`` maps the Parquet file but decompresses its (zstd) pages onto the heap: every
process reading a split that way holds a private copy of it (a 300 MB split took ~400 MB per process). An IPC file
without compression is read zero-copy: the table's buffers point into the mapping, whose pages the kernel's page
cache shares between every process that maps the file, and which it can drop and reread under memory pressure.

The file is named by the manifest's digest (which lists every shard's sha256) and the split, so another dataset, or
a rewritten one, never reads a stale copy. The first process on the node to ask writes it under an exclusive lock
(a temporary file renamed into place); the others wait on the lock and map what it wrote.

Copies of old datasets would pile up in the directory: every use of a copy sets its mtime, and writing a copy removes
the directory's others that no process has used for ``KEEP_DAYS``.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .manifest import DatasetError
from .reader import DatasetReader

SUFFIX = ".arrow"
WRITE_BATCH_ROWS = 4  # rows per record batch of a copy
KEEP_DAYS = 7  # a copy no process has used (``shared_split``) for this long is removed when another copy is written
STAGED_DAYS = 1  # a staged file this old is a killed writer's (a writer rewrites its file as it goes)
DAY_S = 24 * 3600
# The names this module writes (``cache_name``, its lock, a staged copy): only those are ever pruned, whatever else
# a ``data.node_cache`` directory holds.
_COPY = re.compile(r".+-[0-9a-f]{32}" + re.escape(SUFFIX))
_LOCK = re.compile(r".+-[0-9a-f]{32}\.lock")
_STAGED = re.compile(r"\..+-[0-9a-f]{32}" + re.escape(SUFFIX) + r"\..+\.tmp")


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
    if _mark_used(path):
        return path
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if _mark_used(path):
            return path
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
    prune(cache_dir, keep=path)
    return path


def _mark_used(path: Path) -> bool:
    """Set the copy's mtime to now (what ``prune`` reads); False if there is no copy."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except OSError:  # another user's copy (readable, not ours to touch), a read-only directory
        return path.is_file()
    return True


def prune(cache_dir: str | os.PathLike, keep: str | os.PathLike) -> list[Path]:
    """Remove the copies in ``cache_dir`` (and their locks) unused for ``KEEP_DAYS``, and staged files older than
    ``STAGED_DAYS``, never ``keep``; returns what was removed. A file that cannot be removed (another user's) stays.

    A process still mapping a removed copy keeps reading it: Linux frees an unlinked file's pages only once no
    process maps it."""
    cache_dir, keep = Path(cache_dir), Path(keep)
    protected = {keep.name, keep.with_suffix(".lock").name}
    now = time.time()
    removed = []
    for entry in cache_dir.iterdir():
        if _COPY.fullmatch(entry.name):
            expired = _unused_for(entry, now) > KEEP_DAYS * DAY_S
            doomed = [entry, entry.with_suffix(".lock")]
        elif _LOCK.fullmatch(entry.name):  # a lock left by a write that never finished (its copy's goes with it)
            expired = not entry.with_suffix(SUFFIX).exists() and _unused_for(entry, now) > KEEP_DAYS * DAY_S
            doomed = [entry]
        elif _STAGED.fullmatch(entry.name):
            expired, doomed = _unused_for(entry, now) > STAGED_DAYS * DAY_S, [entry]
        else:
            continue
        if not expired or any(path.name in protected for path in doomed):
            continue
        for path in doomed:
            try:
                path.unlink()
                removed.append(path)
            except OSError:  # gone already, or not ours to remove
                pass
    return removed


def _unused_for(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:  # removed meanwhile (by this prune, with its copy, or another process)
        return 0.0


def _write_rows(shards: Sequence[Path], out) -> None:
    """The shards' rows, in order, as one IPC file, a few rows at a time: the writing process holds one row group
    decoded (``writer.ROW_GROUP_BYTES`` of rows; Arrow decodes a row group whole) and gives the memory back when done
    (Arrow's allocator would keep it for reuse)."""
    writer = None
    try:
        for shard in shards:
            try:
                parquet = pq.ParquetFile(shard, memory_map=True)
                for batch in parquet.iter_batches(batch_size=WRITE_BATCH_ROWS, use_threads=False):
                    writer = writer or pa.ipc.new_file(out, batch.schema)
                    writer.write_batch(batch)
            except (pa.ArrowInvalid, OSError) as error:
                raise DatasetError(f"shard {shard}: unreadable Parquet ({error})") from None
        if writer is None and shards:  # no rows: the file still holds the columns
            writer = pa.ipc.new_file(out, pq.read_schema(shards[0]))
    finally:
        if writer is not None:
            writer.close()
        pa.default_memory_pool().release_unused()


def mapped_table(path: str | os.PathLike) -> pa.Table:
    """The IPC file's table, its buffers in the file's memory mapping (nothing copied onto the heap)."""
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def buffers_in_mapping(table: pa.Table, path: str | os.PathLike) -> bool:
    """Whether every buffer of ``table`` lies in this process's memory mapping of the file ``path`` (Linux's
    ``/proc/self/maps``): the table was read zero-copy, none of it copied onto the heap. A diagnostic."""
    ranges = file_mappings(path)
    return all(any(start <= buf.address and buf.address + buf.size <= end for start, end in ranges)
               for column in table.columns for chunk in column.chunks for buf in chunk.buffers()
               if buf is not None and buf.size > 0)


def file_mappings(path: str | os.PathLike) -> list[tuple[int, int]]:
    """The address ranges ``[start, end)`` at which this process maps the file ``path``: its device and inode, or
    (on overlayfs, whose maps name the layer's device) its path."""
    stat, real = os.stat(path), os.path.realpath(path)
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:  # start-end perms offset major:minor inode [path]
            span, _, _, device, inode, name = (line.rstrip("\n").split(maxsplit=5) + [""])[:6]
            major, minor = (int(part, 16) for part in device.split(":"))
            if (int(inode), os.makedev(major, minor)) == (stat.st_ino, stat.st_dev) or name == real:
                start, end = (int(address, 16) for address in span.split("-"))
                ranges.append((start, end))
    return ranges
