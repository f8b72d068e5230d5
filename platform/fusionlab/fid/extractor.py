"""Choosing the feature extractor for FID/KID, and running it over a set of images in batches."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from fusionlab.errors import FusionlabError
from fusionlab.fid.inception import (
    INCEPTION_FILE,
    WEIGHTS_ENV,
    InceptionWeightsMissing,
    load_inception,
    missing_weights_message,
    prepare_images,
)
from fusionlab.fid.local import LocalFeatures

KINDS = ("auto", "inception", "local")


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps images in [0, 1], `[N, 3, H, W]`, to `[N, D]` features; `name` says which network (and so which scale)."""

    name: str

    def features(self, images: Tensor) -> Tensor: ...


def default_weights_path() -> Path:
    return Path.home() / ".cache" / "fusionlab" / INCEPTION_FILE


def inception_weights_path(weights: str | os.PathLike | None = None) -> Path:
    """Where the Inception weights are looked for: `weights`, else $FUSIONLAB_INCEPTION_WEIGHTS, else the cache."""
    if weights is not None:
        return Path(weights).expanduser()
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env).expanduser() if env else default_weights_path()


def resolve_extractor(kind: str = "auto", weights: str | os.PathLike | None = None) -> FeatureExtractor:
    """`"inception"`: the FID InceptionV3 (its weights file is required); `"local"`: `LocalFeatures`;
    `"auto"`: Inception when its weights file exists, else `LocalFeatures`.

    An explicit `weights` path that does not exist is an error even with `"auto"`: a caller who names a file
    would otherwise get numbers on another scale without noticing.
    """
    if kind not in KINDS:
        raise FusionlabError(f"feature extractor kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "local":
        return LocalFeatures()
    path = inception_weights_path(weights)
    if kind == "auto" and weights is None and not path.is_file():
        return LocalFeatures()
    if not path.is_file():
        raise InceptionWeightsMissing(missing_weights_message(path))
    return load_inception(path)


def _device_of(extractor: FeatureExtractor) -> torch.device:
    if isinstance(extractor, torch.nn.Module):
        for t in list(extractor.parameters()) + list(extractor.buffers()):
            return t.device
    return torch.device("cpu")


@torch.no_grad()
def extract(extractor: FeatureExtractor, images: Tensor, batch_size: int = 32) -> Tensor:
    """Features of `[N, 3, H, W]` images in [0, 1] (or uint8), `batch_size` at a time -> `[N, D]` float64 on CPU."""
    if batch_size < 1:
        raise FusionlabError(f"batch_size must be >= 1, got {batch_size}")
    images = prepare_images(images) if images.dtype != torch.uint8 else images
    if len(images) == 0:
        raise FusionlabError("no images to extract features from")
    device = _device_of(extractor)
    out = [extractor.features(images[i:i + batch_size].to(device)).to("cpu", torch.float64)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)
