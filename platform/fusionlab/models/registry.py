"""One flat model registry: ``@register_model`` keys a constructor on its function name."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence

from .segmenter import FusionModel

_MODELS: dict[str, Callable[..., FusionModel]] = {}


def register_model(fn: Callable[..., FusionModel]) -> Callable[..., FusionModel]:
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def build(
    name: str, *, backbone: str = "resnet50", num_classes: int, modalities: Sequence[str], **params
) -> FusionModel:
    """Build a registered model. ``params`` are the model's own keyword arguments (e.g. cen's ``threshold``)."""
    try:
        constructor = _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: {list_models()}") from None
    return constructor(backbone=backbone, num_classes=num_classes, modalities=list(modalities), **params)
