"""Image bytes <-> arrays: lossless PNG (8- and 16-bit) or raw ``[H, W, C]`` bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .manifest import DatasetError

PNG_COMPRESS_LEVEL = 1  # fast to write; decode speed barely depends on it


def as_hwc(array: np.ndarray) -> np.ndarray:
    return array[:, :, None] if array.ndim == 2 else array


def encode(array: np.ndarray, encoding: str) -> bytes:
    """Encode an ``[H, W]`` or ``[H, W, C]`` array (its dtype is kept)."""
    if encoding == "raw":
        return np.ascontiguousarray(as_hwc(array)).tobytes()
    image = array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def decode(data: bytes, encoding: str, dtype: str, channels: int, height: int, width: int,
           where: str = "image") -> np.ndarray:
    """Decode to an ``[H, W, C]`` array, checking dtype and shape; ``where`` names the sample in errors."""
    expected = (height, width, channels)
    if not isinstance(data, bytes | bytearray | memoryview | np.ndarray):
        raise DatasetError(f"{where}: no image bytes (the column holds {type(data).__name__})")
    if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in (height, width)):
        raise DatasetError(f"{where}: height x width {height!r} x {width!r}; expected positive integers")
    if encoding == "raw":
        size, expected_size = memoryview(data).nbytes, height * width * channels * np.dtype(dtype).itemsize
        if size != expected_size:
            raise DatasetError(f"{where}: raw image has {size} bytes, expected {expected_size} ({height}x{width}x"
                               f"{channels} {dtype})")
        return np.frombuffer(data, dtype=dtype).reshape(expected)
    try:
        with Image.open(io.BytesIO(data)) as image:
            array = as_hwc(np.asarray(image))
    except Exception as error:  # PIL raises several types for damaged files
        raise DatasetError(f"{where}: unreadable PNG ({type(error).__name__}: {error})") from None
    if array.dtype != np.dtype(dtype) or array.shape != expected:
        raise DatasetError(f"{where}: decoded {array.dtype} {list(array.shape)}, expected {dtype} {list(expected)}")
    return array
