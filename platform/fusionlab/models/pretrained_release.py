"""Which torchvision ImageNet release a ResNet weights file is, told by its sha256.

torchvision names its files ``<arch>-<first 8 hex digits of the file's sha256>.pth``, so those 8 digits identify a
release whatever the file is called locally. The references trained from the v1 weights (the older copies they
download); v2 (torchvision 0.13's recipe) is a different, stronger initialisation, and a reproduction must say which
one it used. ``model.pretrained_version`` makes that a checked choice.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .pretrained_errors import PretrainedReleaseError, PretrainedWeightsError

__all__ = ["ANY", "KNOWN_FILES", "RELEASES", "PretrainedFile", "PretrainedReleaseError", "check_pretrained_release",
           "identify_pretrained", "sha256_file", "weights_sha256"]

RELEASES = ("imagenet1k_v1", "imagenet1k_v2")
ANY = "any"

# sha256 prefix -> (architecture, release)
KNOWN_FILES: dict[str, tuple[str, str]] = {
    "0676ba61": ("resnet50", "imagenet1k_v1"),
    "19c8e357": ("resnet50", "imagenet1k_v1"),  # the older copy of v1, the one the references download
    "11ad3fa6": ("resnet50", "imagenet1k_v2"),
    "63fe2227": ("resnet101", "imagenet1k_v1"),
    "5d3b4d8f": ("resnet101", "imagenet1k_v1"),  # older copy
    "cd907fc2": ("resnet101", "imagenet1k_v2"),
    "394f9c45": ("resnet152", "imagenet1k_v1"),
    "b121ed2d": ("resnet152", "imagenet1k_v1"),  # older copy
    "f82ba261": ("resnet152", "imagenet1k_v2"),
}
PREFIX_LENGTH = 8


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_digests: dict[tuple, str] = {}


def weights_sha256(path: str | os.PathLike) -> str:
    """``sha256_file`` once per unchanged file in this process (keyed on its path, size, mtime and inode, as
    ``data/verify.py`` keys shards): the driver checks a grid's file before its cells start, and an in-process run
    loads the same file again."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _digests:
        _digests[key] = sha256_file(path)
    return _digests[key]


@dataclass(frozen=True)
class PretrainedFile:
    path: str
    sha256: str
    arch: str | None  # None: not a known torchvision file
    release: str | None

    @property
    def prefix(self) -> str:
        return self.sha256[:PREFIX_LENGTH]

    def describe(self) -> str:
        if self.release is None:
            return "not a known torchvision ResNet ImageNet release"
        return f"torchvision {self.arch} {self.release}"


def identify_pretrained(path: str | os.PathLike, known: dict[str, tuple[str, str]] | None = None) -> PretrainedFile:
    """The file's sha256 and, when torchvision published it, its architecture and release."""
    if not Path(path).is_file():
        raise PretrainedWeightsError(f"pretrained weights file not found: {path}")
    digest = weights_sha256(path)
    arch, release = (KNOWN_FILES if known is None else known).get(digest[:PREFIX_LENGTH], (None, None))
    return PretrainedFile(str(path), digest, arch, release)


def check_pretrained_release(path: str | os.PathLike, expected: str, arch: str | None = None,
                             known: dict[str, tuple[str, str]] | None = None) -> PretrainedFile:
    """Identify ``path`` and refuse it unless it is the ``expected`` release (``any``: accept every file).
    ``arch`` (the backbone) only narrows the files the error message lists."""
    if expected != ANY and expected not in RELEASES:
        raise PretrainedReleaseError(f"model.pretrained_version must be one of {[*RELEASES, ANY]}, got {expected!r}")
    table = KNOWN_FILES if known is None else known
    found = identify_pretrained(path, table)
    if expected == ANY or found.release == expected:
        return found
    wanted = sorted(prefix for prefix, (file_arch, release) in table.items()
                    if release == expected and (arch is None or file_arch == arch or arch not in _archs(table)))
    listing = ", ".join(f"{table[p][0]}-{p}.pth" for p in wanted) or "none known"
    raise PretrainedReleaseError(
        f"model.pretrained {found.path} (sha256 {found.prefix}...) is {found.describe()}, but "
        f"model.pretrained_version is {expected} (files: {listing}); use a {expected} file, or set "
        f"model.pretrained_version: any to load this one anyway")


def _archs(table: dict[str, tuple[str, str]]) -> set[str]:
    return {file_arch for file_arch, _ in table.values()}
