"""Converters from the public datasets' own formats to fusionlab datasets: ``convert(kind, src, out, **options)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from ..manifest import DatasetError, Manifest
from ..writer import check_out
from .cityscapes import convert_cityscapes
from .nyudv2 import convert_nyudv2
from .sunrgbd import convert_sunrgbd
from .taskonomy import convert_taskonomy

CONVERTERS: dict[str, Callable[..., Manifest]] = {
    "nyudv2": convert_nyudv2,
    "sunrgbd": convert_sunrgbd,
    "cityscapes": convert_cityscapes,
    "taskonomy": convert_taskonomy,
}


def convert(kind: str, src: str | Path, out: str | Path, **options) -> Manifest:
    """Convert the dataset of this kind at ``src`` into a fusionlab dataset at ``out``."""
    if kind not in CONVERTERS:
        raise DatasetError(f"unknown dataset kind {kind!r}; known kinds: {', '.join(CONVERTERS)}")
    converter = CONVERTERS[kind]
    accepted = [name for name, parameter in inspect.signature(converter).parameters.items()
                if parameter.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DatasetError(f"{kind} converter: unknown options {unknown}; it accepts {accepted}")
    check_out(Path(out), options.get("overwrite", False))  # before reading the source: nothing half-written
    return converter(src, out, **options)


__all__ = ["CONVERTERS", "convert", "convert_cityscapes", "convert_nyudv2", "convert_sunrgbd", "convert_taskonomy"]
