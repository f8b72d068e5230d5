"""Taskonomy image translation: one sample per ``point_X_view_Y`` present in every chosen domain folder.

SRC holds one folder per domain (rgb, normal, reshading, depth_zbuffer, edge_texture, ...) of
``point_X_view_Y_domain_DOMAIN.png`` files. Every file of a domain must have its first file's PNG mode: 8-bit colour,
8-bit gray or 16-bit gray (the depth and edge domains).

``encoding``:
- ``reference`` (default): the CEN translation reference's ``utils/dataset.py``: depth as
  ``trunc(log(1 + x) * 255 / 11.1)``, edge_texture as ``trunc(x * 255 / 11355)``, edge_occlusion
  ``trunc(x * 255 / 11584)`` (clipped to 255), stored as uint8; every domain is then served as ``v / 255`` mapped
  to [-1, 1] (its ``Normalize(0.5, 0.5)``). Other 16-bit domains keep their values, scaled by 1/65535.
- ``raw``: the files' own values: 8-bit in [0, 1] (RGB ImageNet-normalised), 16-bit scaled by 1/65535.

A sample goes to "val" when a hash of its id falls below ``val_fraction``, so adding samples never moves existing
ones between splits. ``split_lists`` instead takes the splits from list files (the reference's
``data/train_domain.txt`` / ``val_domain.txt``: one ``.../point_X_view_Y_domain_{domain}.png`` per line), e.g.
``{"train": train_domain.txt, "test": val_domain.txt}``; ``val_fraction`` of "train" is then carved into "val", and
samples in no list are left out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..manifest import DatasetError, Manifest, ModalitySpec, gray_spec, rgb_spec
from ..sample import Sample
from ..writer import DEFAULT_MAX_SHARD_BYTES
from .common import SourceSample, describe, read_image, read_lines, require_dir, split_of, write_samples

FILE_NAME = re.compile(r"^(point_(\d+)_view_(\d+))_domain_.+\.png$")
LISTED_ID = re.compile(r"(point_\d+_view_\d+)_domain_")
ENCODINGS = ("reference", "raw")
# yikaiw/CEN image2image_translation/utils/dataset.py: max_v (min_v is 0); 'depth' in a name also takes log(1 + x)
REFERENCE_MAX = {"edge_texture": 11355, "edge_occlusion": 11584, "depth_euclidean": 11.1, "depth_zbuffer": 11.1}


def convert_taskonomy(src: str | Path, out: str | Path, *, overwrite: bool = False,
                      max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, domains: Sequence[str] | None = None,
                      target: str = "rgb", skip_incomplete: bool = False, val_fraction: float = 0.1,
                      encoding: str = "reference", split_lists: dict[str, str | Path] | None = None) -> Manifest:
    src = require_dir(Path(src), "Taskonomy source")
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if encoding not in ENCODINGS:
        raise DatasetError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    domains = tuple(domains) if domains else discover_domains(src)
    if target not in domains:
        raise DatasetError(f"{src}: target domain {target!r} is not among the chosen domains {list(domains)}")
    files = {domain: _domain_files(src, domain) for domain in domains}
    listed = _listed_splits(split_lists) if split_lists else None
    if listed is not None:
        files = {domain: {i: path for i, path in found.items() if i in listed} for domain, found in files.items()}
        absent = sorted(set(listed) - set().union(*files.values()), key=_numeric_order)
        if absent and not skip_incomplete:
            raise DatasetError(f"{src}: {len(absent)} listed sample(s) in no domain folder, e.g. {absent[0]} "
                               f"({listed[absent[0]]!r}); pass skip_incomplete=True to leave them out")
    sample_ids = _complete_sample_ids(src, files, skip_incomplete)
    first = sample_ids[0]
    stored = {domain: _stored_spec(domain, files[domain][first]) for domain in domains}
    specs = {domain: served_spec(domain, spec, encoding) for domain, spec in stored.items()}
    source = {"converter": "taskonomy", "domains": list(domains), "val_fraction": val_fraction, "encoding": encoding,
              "skipped_incomplete": len(set().union(*files.values())) - len(sample_ids)}
    if listed is not None:
        source["split_lists"] = {split: str(path) for split, path in split_lists.items()}
    manifest = Manifest(name="taskonomy", task="translation", modalities=specs, target=target, source=source)

    def split(sample_id: str) -> str:
        return listed[sample_id] if listed is not None else split_of(sample_id, val_fraction)

    samples = (_sample(sample_id, files, stored, specs, first, split(sample_id), encoding)
               for sample_id in sample_ids)
    return write_samples(Path(out), manifest, samples, total=len(sample_ids), overwrite=overwrite,
                         max_shard_bytes=max_shard_bytes, val_fraction=val_fraction if listed is not None else 0.0)


def _listed_splits(split_lists: dict[str, str | Path]) -> dict[str, str]:
    """sample id -> split, from each split's list file (the reference's ``{domain}/point_X_view_Y_...`` lines)."""
    listed: dict[str, str] = {}
    for split, path in split_lists.items():
        for number, line in read_lines(Path(path)):
            match = LISTED_ID.search(line)
            if not match:
                raise DatasetError(f"{path}:{number}: no point_X_view_Y_domain_ in {line!r}")
            if listed.setdefault(match.group(1), split) != split:
                raise DatasetError(f"{path}:{number}: {match.group(1)} is listed in both {listed[match.group(1)]!r} "
                                   f"and {split!r}")
    return listed


def reference_encode(domain: str, array: np.ndarray) -> np.ndarray:
    """The reference's uint8 image of a Taskonomy array: ``log(1 + x)`` for depth, ``x * 255 / max`` for depth and
    edges, truncated. The reference's Pillow decoded 16-bit PNGs as int32, so ``1 + 65535`` (Taskonomy's "no depth")
    did not wrap; computed here in float64 for the same result (Pillow >= 10 gives uint16, where the reference's own
    ``1 + img`` wraps to 0 and its log to -inf)."""
    if domain not in REFERENCE_MAX:
        return array
    values = array.astype(np.float64)
    if "depth" in domain:
        values = np.log(1 + values)
    values = values * 255.0 / REFERENCE_MAX[domain]
    return np.clip(values, 0, 255).astype(np.uint8)  # the reference's astype alone wraps values above 255


def discover_domains(src: Path) -> tuple[str, ...]:
    """The subfolders of SRC holding at least one ``point_X_view_Y_domain_D.png`` file."""
    found = tuple(sorted(folder.name for folder in src.iterdir()
                         if folder.is_dir() and any(FILE_NAME.match(path.name) for path in folder.iterdir())))
    if not found:
        raise DatasetError(f"{src}: no domain folders of point_X_view_Y_domain_D.png files found")
    return found


def _domain_files(src: Path, domain: str) -> dict[str, Path]:
    """sample id (``point_X_view_Y``) -> its file in this domain's folder."""
    folder = require_dir(src / domain, f"Taskonomy domain {domain!r}")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        match = FILE_NAME.match(path.name)
        if not match:
            continue
        if match.group(1) in files:
            raise DatasetError(f"{path}: a second file for {match.group(1)} in {folder} (the first is "
                               f"{files[match.group(1)].name})")
        files[match.group(1)] = path
    if not files:
        raise DatasetError(f"{folder}: no point_X_view_Y_domain_{domain}.png files found")
    return files


def _complete_sample_ids(src: Path, files: dict[str, dict[str, Path]], skip_incomplete: bool) -> list[str]:
    complete = []
    for sample_id in sorted(set().union(*files.values()), key=_numeric_order):
        missing = [domain for domain, found in files.items() if sample_id not in found]
        if not missing:
            complete.append(sample_id)
        elif not skip_incomplete:
            present = [domain for domain in files if domain not in missing]
            raise DatasetError(f"{src / missing[0] / f'{sample_id}_domain_{missing[0]}.png'}: file not found; "
                               f"{sample_id} exists in {present} but not in {missing} (pass skip_incomplete=True "
                               f"to leave such samples out)")
    if not complete:
        raise DatasetError(f"{src}: no point_X_view_Y is present in every chosen domain {list(files)}")
    return complete


def _numeric_order(sample_id: str) -> tuple[int, int, str]:
    _, point, _, view = sample_id.split("_")
    return int(point), int(view), sample_id


def _stored_spec(domain: str, path: Path) -> ModalitySpec:
    """The spec of the domain's files as they are (``raw``)."""
    array = read_image(path, domain)
    if array.ndim == 2:
        return gray_spec() if array.dtype == np.uint8 else ModalitySpec("uint16", 1, scale=1 / 65535)
    if array.dtype == np.uint8 and array.shape[2] == 3:
        return rgb_spec() if domain == "rgb" else gray_spec(channels=3)
    raise DatasetError(f"{path}: {domain} image is {describe(array)}; expected 8-bit gray, 8-bit colour or 16-bit "
                       f"gray")


def served_spec(domain: str, stored: ModalitySpec, encoding: str) -> ModalitySpec:
    """The manifest's spec: ``stored`` (raw), or the reference's uint8 served in [-1, 1]."""
    if encoding == "raw":
        return stored
    dtype = "uint8" if domain in REFERENCE_MAX else stored.dtype
    channels = stored.channels
    return ModalitySpec(dtype, channels, scale=1 / 255 if dtype == "uint8" else 1 / 65535, mean=(0.5,) * channels,
                        std=(0.5,) * channels)


def _sample(sample_id: str, files: dict[str, dict[str, Path]], stored: dict[str, ModalitySpec],
            specs: dict[str, ModalitySpec], first: str, split: str, encoding: str) -> SourceSample:
    modalities = {}
    for domain, spec in stored.items():
        path = files[domain][sample_id]
        array = read_image(path, domain)
        channels = 1 if array.ndim == 2 else array.shape[2]
        if array.dtype != np.dtype(spec.dtype) or channels != spec.channels:
            raise DatasetError(f"{path}: {domain} image is {describe(array)}, but the domain's first file "
                               f"{files[domain][first].name} is {spec.dtype} with {spec.channels} channels")
        modalities[domain] = reference_encode(domain, array) if encoding == "reference" else array
    origin = ", ".join(str(files[domain][sample_id]) for domain in specs)
    return origin, Sample(sample_id, split, modalities, None)
