"""Taskonomy image translation: one sample per ``point_X_view_Y`` present in every chosen domain folder.

SRC holds one folder per domain (rgb, normal, reshading, depth_zbuffer, edge_texture, ...) of
``point_X_view_Y_domain_DOMAIN.png`` files. A domain's modality spec follows the PNG mode of its first file: 8-bit
colour -> uint8 x 3, 8-bit gray -> uint8 x 1, 16-bit gray (the depth domains) -> uint16 scaled by 1/65535. Every file
of the domain must match it. A sample goes to "val" when a hash of its id falls below ``val_fraction``, so adding
samples never moves existing ones between splits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..manifest import DatasetError, Manifest, ModalitySpec, gray_spec, rgb_spec
from ..sample import Sample
from ..writer import DEFAULT_MAX_SHARD_BYTES
from .common import SourceSample, describe, read_image, require_dir, split_of, write_samples

FILE_NAME = re.compile(r"^(point_(\d+)_view_(\d+))_domain_.+\.png$")


def convert_taskonomy(src: str | Path, out: str | Path, *, overwrite: bool = False,
                      max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, domains: Sequence[str] | None = None,
                      target: str = "rgb", skip_incomplete: bool = False, val_fraction: float = 0.1) -> Manifest:
    src = require_dir(Path(src), "Taskonomy source")
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be in [0, 1), got {val_fraction}")
    domains = tuple(domains) if domains else discover_domains(src)
    if target not in domains:
        raise DatasetError(f"{src}: target domain {target!r} is not among the chosen domains {list(domains)}")
    files = {domain: _domain_files(src, domain) for domain in domains}
    sample_ids = _complete_sample_ids(src, files, skip_incomplete)
    first = sample_ids[0]
    specs = {domain: _spec_of(domain, files[domain][first]) for domain in domains}
    manifest = Manifest(name="taskonomy", task="translation", modalities=specs, target=target,
                        source={"converter": "taskonomy", "domains": list(domains), "val_fraction": val_fraction,
                                "skipped_incomplete": len(set().union(*files.values())) - len(sample_ids)})
    samples = (_sample(sample_id, files, specs, first, val_fraction) for sample_id in sample_ids)
    return write_samples(Path(out), manifest, samples, total=len(sample_ids), overwrite=overwrite,
                         max_shard_bytes=max_shard_bytes)


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


def _spec_of(domain: str, path: Path) -> ModalitySpec:
    array = read_image(path, domain)
    if array.ndim == 2:
        return gray_spec() if array.dtype == np.uint8 else ModalitySpec("uint16", 1, scale=1 / 65535)
    if array.dtype == np.uint8 and array.shape[2] == 3:
        return rgb_spec() if domain == "rgb" else gray_spec(channels=3)
    raise DatasetError(f"{path}: {domain} image is {describe(array)}; expected 8-bit gray, 8-bit colour or 16-bit "
                       f"gray")


def _sample(sample_id: str, files: dict[str, dict[str, Path]], specs: dict[str, ModalitySpec], first: str,
            val_fraction: float) -> SourceSample:
    modalities = {}
    for domain, spec in specs.items():
        path = files[domain][sample_id]
        array = read_image(path, domain)
        channels = 1 if array.ndim == 2 else array.shape[2]
        if array.dtype != np.dtype(spec.dtype) or channels != spec.channels:
            raise DatasetError(f"{path}: {domain} image is {describe(array)}, but the domain's first file "
                               f"{files[domain][first].name} is {spec.dtype} with {spec.channels} channels")
        modalities[domain] = array
    origin = ", ".join(str(files[domain][sample_id]) for domain in specs)
    return origin, Sample(sample_id, split_of(sample_id, val_fraction), modalities, None)
