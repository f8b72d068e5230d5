"""The model registry, one flat name space per task: ``@register_model`` keys a constructor on its function name.

``@register_model`` registers a segmentation model; ``@register_model(task="translation")`` an image-to-image
translation generator. The same name may exist in both tasks (``cen``, ``asymfusion``, ``unimodal``). Each entry
declares its parameters (``params=``, a ``models.params`` class; the config's ``model.params`` is validated against
it), the fewest modalities it fuses (``min_modalities``) and the backbone families it runs on (``families``, the
names of ``models/backbones/``' families; None: every family of its task); ``build`` refuses what does not fit, and
so does the config (``check_modalities``). ``build`` takes constructor keyword arguments, ``build_from_params`` an
instance of that class.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .backbone_registry import SegmentationBackbone, backbone_family, get_backbone
from .fusion import FusionModel
from .params import ModelParams, SegmenterParams, TranslationParams
from .unet import UNetSpec

TASKS = ("segmentation", "translation")
DEFAULT_BACKBONES = {"segmentation": "resnet50", "translation": "pix2pix_unet"}

Constructor = Callable[..., FusionModel]


@dataclass(frozen=True)
class BuildArgs:
    """The arguments of ``build`` that made a model (its ``build_args``)."""

    task: str
    name: str
    backbone: str | SegmentationBackbone
    num_classes: int
    modalities: tuple[str, ...]
    params: dict[str, Any]
    width: float = 1.0


_MODELS: dict[str, dict[str, Constructor]] = {task: {} for task in TASKS}
_PARAMS: dict[str, dict[str, type[ModelParams]]] = {task: {} for task in TASKS}
_FAMILIES: dict[str, dict[str, tuple[str, ...] | None]] = {task: {} for task in TASKS}  # None: every family
_MIN_MODALITIES: dict[str, dict[str, int]] = {task: {} for task in TASKS}
CNN_FAMILIES = ("resnet", "xception")  # CEN's and AsymFusion's BN-channel fusion, in their blocks
DEFAULT_PARAMS: dict[str, type[ModelParams]] = {"segmentation": SegmenterParams, "translation": TranslationParams}


def _task_models(task: str) -> dict[str, Constructor]:
    try:
        return _MODELS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}") from None


def register_model(fn: Constructor | None = None, *, task: str = "segmentation",
                   params: type[ModelParams] | None = None, families: tuple[str, ...] | None = None,
                   min_modalities: int = 1):
    """Use bare (``@register_model``: segmentation) or with a task and the model's params class
    (``@register_model(task="translation", params=TranslationCENParams)``; default: the task's parameterless one,
    ``SegmenterParams`` for the RefineNet segmenters). ``families``: the backbone families of the task the model runs
    on (``models.backbone_registry.backbone_family``; None: every one, a family added later included);
    ``min_modalities``: the fewest input modalities it takes (2 for a model that fuses)."""
    models = _task_models(task)
    if min_modalities < 1:
        raise ValueError(f"min_modalities must be >= 1, got {min_modalities}")

    def register(constructor: Constructor) -> Constructor:
        if constructor.__name__ in models:
            raise ValueError(f"{task} model {constructor.__name__!r} is registered twice")
        models[constructor.__name__] = constructor
        _PARAMS[task][constructor.__name__] = params or DEFAULT_PARAMS[task]
        _FAMILIES[task][constructor.__name__] = None if families is None else tuple(families)
        _MIN_MODALITIES[task][constructor.__name__] = min_modalities
        return constructor

    return register if fn is None else register(fn)


def unregister_model(name: str, task: str = "segmentation") -> None:
    """Remove model ``name`` of ``task`` (a test's temporary one)."""
    _constructor(name, task)
    for table in (_MODELS, _PARAMS, _FAMILIES, _MIN_MODALITIES):
        del table[task][name]


def list_models(pattern: str = "*", task: str | None = "segmentation") -> list[str]:
    """The task's model names matching ``pattern``; ``task=None``: every task's names, deduplicated."""
    names = set().union(*_MODELS.values()) if task is None else _task_models(task)
    return sorted(name for name in names if fnmatch.fnmatch(name, pattern))


def families(name: str, task: str = "segmentation") -> tuple[str, ...] | None:
    """The backbone families model ``name`` of ``task`` runs on (None: every family of the task)."""
    _constructor(name, task)
    return _FAMILIES[task][name]


def min_modalities(name: str, task: str = "segmentation") -> int:
    """The fewest input modalities model ``name`` of ``task`` takes."""
    _constructor(name, task)
    return _MIN_MODALITIES[task][name]


def runs_on(name: str, backbone: str | SegmentationBackbone, task: str = "segmentation") -> bool:
    """Whether model ``name`` of ``task`` runs on ``backbone`` (a backbone of the task whose family is the model's)."""
    wanted, family = families(name, task), backbone_family(backbone, task)  # an unknown backbone is an error
    return wanted is None or family in wanted


def check_backbone(name: str, backbone: str | SegmentationBackbone, task: str = "segmentation") -> None:
    if not runs_on(name, backbone, task):
        shown = backbone if isinstance(backbone, str) else type(backbone).__name__
        raise ValueError(f"model {name!r} does not run on backbone {shown!r} (a {backbone_family(backbone, task)}): "
                         f"it runs on {' or '.join(families(name, task))} backbones")


def check_modalities(name: str, modalities: Sequence[str], task: str = "segmentation") -> None:
    """A ValueError naming the model, its minimum and ``modalities`` when they are too few for model ``name``."""
    needed = min_modalities(name, task)
    if len(modalities) < needed:
        raise ValueError(f"{name} needs at least {needed} modalities, got {list(modalities)}")


def params_class(name: str, task: str = "segmentation") -> type[ModelParams]:
    """The params class registered model ``name`` of ``task`` declares."""
    _constructor(name, task)
    return _PARAMS[task][name]


def _constructor(name: str, task: str) -> Constructor:
    models = _task_models(task)
    try:
        return models[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r} for task {task!r}; registered {task} models: "
                         f"{list_models(task=task)}") from None


def build_from_params(
    name: str,
    params: ModelParams | None = None,
    *,
    backbone: str | SegmentationBackbone | None = None,
    num_classes: int,
    modalities: Sequence[str],
    task: str = "segmentation",
    width: float = 1.0,
) -> FusionModel:
    """Build from an instance of the model's params class (None: its defaults), checked against ``modalities``."""
    expected = params_class(name, task)
    params = expected() if params is None else params
    if type(params) is not expected:
        raise TypeError(f"{task} model {name!r} takes {expected.__name__}, got {type(params).__name__}")
    check_modalities(name, modalities, task)
    try:
        params.check(modalities)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
    return build(name, backbone=backbone, num_classes=num_classes, modalities=modalities, task=task, width=width,
                 **params.constructor_kwargs(len(modalities)))


def build(
    name: str,
    *,
    backbone: str | SegmentationBackbone | None = None,
    num_classes: int,
    modalities: Sequence[str],
    task: str = "segmentation",
    width: float = 1.0,
    **params,
) -> FusionModel:
    """Build a registered model of ``task``. ``num_classes`` is the output channels for translation; ``backbone``
    defaults to the task's (``resnet50``, ``pix2pix_unet``), or is a spec of one of the task's families (a ResNet
    ``BackboneSpec`` of any ``layers``, an ``XceptionSpec``); ``width`` multiplies every channel width of the backbone
    and its decoder, for comparisons at equal parameter or FLOP budgets; ``params`` are the model's own keyword
    arguments."""
    constructor = _constructor(name, task)
    backbone = backbone or DEFAULT_BACKBONES[task]
    check_backbone(name, backbone, task)
    check_modalities(name, modalities, task)
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    model = constructor(backbone=scaled_backbone(backbone, width, task), num_classes=num_classes,
                        modalities=list(modalities), **params)
    # How it was built, so that it can be saved as weights plus this and rebuilt here (models/model_files.py).
    model.build_args = BuildArgs(task, name, backbone, num_classes, tuple(modalities), dict(params), width)
    return model


def scaled_backbone(backbone: str | SegmentationBackbone, width: float,
                    task: str) -> str | SegmentationBackbone | UNetSpec:
    """``backbone`` as is at width 1, else its spec with every width times ``width``."""
    if width == 1.0:
        return backbone
    return get_backbone(backbone, task).scaled(width)
