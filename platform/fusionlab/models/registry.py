"""The model registry, one flat name space per task: ``@register_model`` keys a constructor on its function name.

``@register_model`` registers a segmentation model; ``@register_model(task="translation")`` an image-to-image
translation generator. The same name may exist in both tasks (``cen``, ``asymfusion``, ``unimodal``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .fusion import FusionModel
from .resnet import BackboneSpec

TASKS = ("segmentation", "translation")
DEFAULT_BACKBONES = {"segmentation": "resnet50", "translation": "pix2pix_unet"}

Constructor = Callable[..., FusionModel]


@dataclass(frozen=True)
class BuildArgs:
    """The arguments of ``build`` that made a model (its ``build_args``)."""

    task: str
    name: str
    backbone: str | BackboneSpec
    num_classes: int
    modalities: tuple[str, ...]
    params: dict[str, Any]


_MODELS: dict[str, dict[str, Constructor]] = {task: {} for task in TASKS}


def _task_models(task: str) -> dict[str, Constructor]:
    try:
        return _MODELS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}") from None


def register_model(fn: Constructor | None = None, *, task: str = "segmentation"):
    """Use bare (``@register_model``: segmentation) or with a task (``@register_model(task="translation")``)."""
    models = _task_models(task)

    def register(constructor: Constructor) -> Constructor:
        if constructor.__name__ in models:
            raise ValueError(f"{task} model {constructor.__name__!r} is registered twice")
        models[constructor.__name__] = constructor
        return constructor

    return register if fn is None else register(fn)


def list_models(pattern: str = "*", task: str | None = "segmentation") -> list[str]:
    """The task's model names matching ``pattern``; ``task=None``: every task's names, deduplicated."""
    names = set().union(*_MODELS.values()) if task is None else _task_models(task)
    return sorted(name for name in names if fnmatch.fnmatch(name, pattern))


def build(
    name: str,
    *,
    backbone: str | BackboneSpec | None = None,
    num_classes: int,
    modalities: Sequence[str],
    task: str = "segmentation",
    **params,
) -> FusionModel:
    """Build a registered model of ``task``. ``num_classes`` is the output channels for translation; ``backbone``
    defaults to the task's (``resnet50``, ``pix2pix_unet``); a segmentation model also takes a ``BackboneSpec``
    (any ``layers``); ``params`` are the model's own keyword arguments."""
    models = _task_models(task)
    try:
        constructor = models[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r} for task {task!r}; registered {task} models: "
                         f"{list_models(task=task)}") from None
    backbone = backbone or DEFAULT_BACKBONES[task]
    model = constructor(backbone=backbone, num_classes=num_classes, modalities=list(modalities), **params)
    # How it was built, so that it can be saved as weights plus this and rebuilt here (models/model_files.py).
    model.build_args = BuildArgs(task, name, backbone, num_classes, tuple(modalities), dict(params))
    return model
