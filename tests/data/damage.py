"""Damage a dataset on disk the ways the verification and label tests need: bytes, manifest fields, labels."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fusionlab.data.codec import decode, encode
from fusionlab.data.writer import sha256_of


def edit_manifest(root: Path, edit) -> None:
    """``edit(data)`` changes the manifest's JSON dict in place."""
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def first_shard(root: Path, split: str) -> Path:
    return root / json.loads((root / "manifest.json").read_text())["splits"][split][0]["file"]


def flip_bytes(path: Path, count: int = 64) -> None:
    """Invert ``count`` bytes in the middle of the file: same size, different content."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def set_label_pixel(root: Path, split: str, value: int, row: int = 0) -> str:
    """Write ``value`` into the top-left label pixel of ``row`` of the split's first shard, then record the shard's
    new size and sha256 in the manifest (so only the label is wrong); returns that row's sample_id."""
    manifest = json.loads((root / "manifest.json").read_text())
    entry, spec = manifest["splits"][split][0], manifest["label"]
    path = root / entry["file"]
    table = pq.read_table(path)
    rows = table.to_pylist()
    label = decode(rows[row]["label"], spec["encoding"], spec["dtype"], 1, rows[row]["height"],
                   rows[row]["width"]).copy()
    label[0, 0, 0] = value
    rows[row]["label"] = encode(label, spec["encoding"])
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    entry.update(bytes=path.stat().st_size, sha256=sha256_of(path))
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return rows[row]["sample_id"]
