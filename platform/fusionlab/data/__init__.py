"""Sharded Arrow/Parquet datasets: format, writer, reader, transforms, synthetic data and converters."""

from .manifest import DatasetError, LabelSpec, Manifest, ModalitySpec, depth_mm_spec, gray_spec, rgb_spec
from .reader import DatasetReader, decode_row
from .sample import Sample
from .synthetic_translation import write_synthetic_translation
from .writer import DatasetWriter

__all__ = [
    "DatasetError", "DatasetReader", "DatasetWriter", "LabelSpec", "Manifest", "ModalitySpec", "Sample",
    "decode_row", "depth_mm_spec", "gray_spec", "rgb_spec", "write_synthetic_translation",
]
