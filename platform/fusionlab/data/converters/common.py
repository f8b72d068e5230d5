"""What every converter needs: reading source images with clear errors, and writing samples with a progress bar."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import track

from ..manifest import DatasetError, Manifest
from ..sample import Sample
from ..writer import DatasetWriter

# (origin, sample): origin names the source file(s) a sample came from, so writer errors can point at them
SourceSample = tuple[str, Sample]


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} directory not found")
    return path


def require_file(path: Path, what: str, context: str | None = None) -> Path:
    if not path.is_file():
        where = f" ({context})" if context else ""
        raise DatasetError(f"{path}: {what} file not found{where}")
    return path


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines of a list file, with their 1-based line numbers."""
    require_file(path, "list")
    lines = path.read_text().splitlines()
    return [(number, line.strip()) for number, line in enumerate(lines, start=1) if line.strip()]


def read_image(path: Path, what: str, context: str | None = None) -> np.ndarray:
    """Decode an image file to an array (uint8 for 8-bit modes, uint16 for 16-bit grayscale)."""
    require_file(path, what, context)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image)
    except Exception as error:  # PIL raises several types for damaged or foreign files
        raise DatasetError(f"{path}: unreadable {what} image ({type(error).__name__}: {error})") from None
    if mode == "I":  # some 16-bit PNGs decode as 32-bit integers
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise DatasetError(f"{path}: {what} image has 32-bit values outside 0..65535; expected a 16-bit image")
        array = array.astype(np.uint16)
    elif not array.dtype.isnative:  # big-endian "I;16B"
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f"{path}: {what} image has PIL mode {mode!r}; expected an 8- or 16-bit image")
    return array


def read_rgb(path: Path, context: str | None = None) -> np.ndarray:
    array = read_image(path, "RGB", context)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise DatasetError(f"{path}: RGB image is {describe(array)}; expected 8-bit colour with 3 channels")
    return array


def read_single_channel(path: Path, what: str, context: str | None = None) -> np.ndarray:
    array = read_image(path, what, context)
    if array.ndim != 2:
        raise DatasetError(f"{path}: {what} image is {describe(array)}; expected a single-channel image")
    return array


def read_label_map(path: Path, context: str | None = None) -> np.ndarray:
    """A label PNG as uint8 class ids (8-bit gray or palette; 16-bit accepted when every value fits in 8 bits)."""
    array = read_single_channel(path, "label", context)
    if array.dtype == np.uint16:
        if array.size and array.max() > 255:
            raise DatasetError(f"{path}: 16-bit label image has values up to {array.max()}; expected class ids "
                               f"below 256")
        array = array.astype(np.uint8)
    return array


def describe(array: np.ndarray) -> str:
    channels = 1 if array.ndim == 2 else array.shape[2]
    return f"{array.dtype} with {channels} channel{'s' if channels != 1 else ''}"


def split_of(sample_id: str, val_fraction: float) -> str:
    """"val" for a stable pseudo-random ``val_fraction`` of sample ids (by sha256), else "train"."""
    digest = hashlib.sha256(sample_id.encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def carve_validation(samples: Iterable[SourceSample], val_fraction: float) -> Iterator[SourceSample]:
    """Move a stable ``val_fraction`` of the train samples to a "val" split (checkpoints are selected on it; the
    test split is evaluated once). Adding samples later does not reshuffle the others."""
    for origin, sample in samples:
        if sample.split == "train" and split_of(sample.sample_id, val_fraction) == "val":
            sample = replace(sample, split="val")
        yield origin, sample


def write_samples(out: Path, manifest: Manifest, samples: Iterable[SourceSample], *, total: int, overwrite: bool,
                  max_shard_bytes: int, late_source: dict[str, Any] | None = None,
                  val_fraction: float = 0.0) -> Manifest:
    """Write samples atomically with a progress bar; ``late_source`` is filled while iterating (e.g. bit depths seen)
    and merged into the manifest's ``source`` before it is written; ``val_fraction`` carves "val" out of "train"."""
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction:
        samples = carve_validation(samples, val_fraction)
        manifest = replace(manifest, source={**manifest.source, "val_from_train": val_fraction})
    console = Console(stderr=True)
    progress = track(samples, total=total, description=f"converting {manifest.name}", console=console,
                     transient=True, disable=not console.is_terminal)  # no bar lines in logs or pipes
    with DatasetWriter(out, manifest, max_shard_bytes=max_shard_bytes, overwrite=overwrite) as writer:
        for origin, sample in progress:
            try:
                writer.write(sample)
            except DatasetError as error:
                raise DatasetError(f"{origin}: {error}") from None
        if late_source:
            writer.manifest.source = {**writer.manifest.source, **late_source}
    return writer.manifest
