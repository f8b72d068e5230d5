"""Every ``torch.load`` in fusionlab: ``weights_only=True`` (tensors and plain containers; a pickled object is never
built, so a planted payload never runs), and any failure turned into one line that says why.

torch's own text for a file its weights-only unpickler refuses advises re-running with ``weights_only=False``: for a
hostile file that would run its code, so that advice is never repeated. Some failures have no text at all (an empty
file: ``EOFError('')``; a text file: ``KeyError('101')``); the reason then says what the file's first bytes are.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from fusionlab.errors import FusionlabError

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save since 1.6: a zip archive
_PICKLE_MAGIC = b"\x80"  # the legacy format: pickles, each opened by its protocol (PROTO 0x80)
_ADVICE = re.compile(r"weights_only|Re-running|trust|Please use|Please file|Check the documentation|"
                     r"If you are seeing|This can happen|internal miniz", re.IGNORECASE)


class TorchFileError(FusionlabError):
    """A file ``torch.load(weights_only=True)`` cannot read; ``reason`` is one line, never empty, without torch's
    advice to load it with ``weights_only=False``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # picklable (a Ray worker's error crosses to the driver)
        return type(self), (self.path, self.reason)


def load_weights_only(path: str | os.PathLike, safe_globals: Iterable[Any] = ()) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, with ``safe_globals`` allowed besides torch's
    default; ``TorchFileError`` (its ``reason`` one line) on any failure, a missing file included."""
    import torch

    try:
        allowed = list(safe_globals)
        if allowed:
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - unpickling raises many types (the reason names it)
        raise TorchFileError(path, unreadable_reason(error, path)) from None


def unreadable_reason(error: BaseException, path: str | os.PathLike | None = None) -> str:
    """Why ``torch.load`` failed on ``path``, in one non-empty line without torch's ``weights_only=False`` advice."""
    if isinstance(error, OSError) and not isinstance(error, EOFError):
        return error.strerror or f"{type(error).__name__}: {error}"
    header = _header(path)
    if header == b"":
        return "an empty file (0 bytes), not a PyTorch file"
    if header is not None and not header.startswith((_ZIP_MAGIC, _PICKLE_MAGIC)):
        return f"not a PyTorch file (no zip archive or pickle header; it starts with {header[:8]!r})"
    detail = _detail(error)
    if "WeightsUnpickler error:" in str(error):
        return (f"refused by the weights-only unpickler, which builds tensors and plain containers only "
                f"({detail or type(error).__name__}; nothing in it was run)")
    if isinstance(error, EOFError) and not detail:
        return "the file ends early (truncated?): EOFError"
    return f"{type(error).__name__}: {detail}" if detail else f"{type(error).__name__} (a corrupt or truncated file?)"


def _header(path: str | os.PathLike | None) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            return file.read(16)
    except OSError:
        return None


def _detail(error: BaseException) -> str:
    text = str(error)
    if "WeightsUnpickler error:" in text:  # the informative part of a weights-only refusal
        text = text.split("WeightsUnpickler error:", 1)[1]
    sentences = re.split(r"(?<=\.)\s+|\n", text)
    kept = [sentence.strip() for sentence in sentences if sentence.strip() and not _ADVICE.search(sentence)]
    return " ".join(kept)[:300].rstrip(".")
