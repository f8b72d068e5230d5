"""The backbone registry: ``@register_backbone`` keys a backbone's spec on its function name, under its family.

A family (``BackboneFamily``, one per encoder design) carries what its backbones share: the spec class, the encoder,
the default decoder under it, the encoder class whose modules take ImageNet weights, the mapping of an ImageNet file
onto that encoder and the keys such a file holds. A backbone is a family's spec under a name::

    @register_backbone(family=RESNET, tiny=True)
    def resnet_mini() -> BackboneSpec:
        return BackboneSpec((2, 2, 2, 2), width=16, decoder_dims=(64, 32, 32, 32))

Every module of ``fusionlab.models.backbones`` is imported on the first lookup (``discover``), so one new file there
is all a new backbone, or a new family with its backbones, takes: the model registry (which families a model runs
on), the config (known names), ImageNet loading, FLOPs counting and the registry-driven tests read it from here.
This module imports nothing of fusionlab's: the model modules import it.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

BACKBONE_TASKS = ("segmentation", "translation")
BACKBONES_PACKAGE = "fusionlab.models.backbones"

# spec, num_branches, *, in_channels, shared_bn, block_factory, encoder_class -> the encoder on stacked branches.
# ``block_factory`` is a CNN family's block variant picker (CEN's exchanging, AsymFusion's fusing blocks);
# ``encoder_class`` a model's own encoder for the family in place of its plain one (TokenFusion's MiT), or None.
EncoderBuilder = Callable[..., Any]
# spec, encoder, num_classes, num_branches, *, shared_bn, rcu_residual -> the decoder predicting at 1/4 resolution.
DecoderBuilder = Callable[..., Any]
# the file's state dict, the encoder's (keys and shapes), the file's name -> the encoder's tensors; raises
# models.pretrained_errors.PretrainedWeightsError when they do not fit.
ImageNetMapping = Callable[[Mapping[str, Any], Mapping[str, Any], str], dict[str, Any]]

SegmentationBackbone = Any  # a spec of a registered segmentation family (BackboneSpec, XceptionSpec, MiTSpec, ...)


@dataclass(frozen=True)
class BackboneFamily:
    """What every backbone of a family shares. ``encoder`` / ``decoder`` build a segmentation network (None for a
    translation family, whose generator builds itself from the spec); ``imagenet_state`` and ``weight_keys`` are
    None where the family takes no ImageNet file; ``release_checked``: its files are torchvision's ImageNet releases,
    identified by sha256 and checked against ``model.pretrained_version`` (``models/pretrained_release.py``)."""

    name: str
    spec_type: type
    task: str = "segmentation"
    encoder: EncoderBuilder | None = None
    decoder: DecoderBuilder | None = None
    encoder_type: type | None = None  # the encoder's class: ``FusionModel.encoders`` finds these to load weights into
    imagenet_state: ImageNetMapping | None = None
    weight_keys: Callable[[Any], dict[str, tuple[int, ...]]] | None = None
    release_checked: bool = False
    description: str = ""  # e.g. "ResNet under Light-Weight RefineNet"


@dataclass(frozen=True)
class RegisteredBackbone:
    """A named spec of a family. ``tiny``: CPU-sized, the registry-driven tests run every model on it."""

    name: str
    spec: Any
    family: BackboneFamily
    tiny: bool = False


_FAMILIES: dict[str, BackboneFamily] = {}
_ENTRIES: dict[str, RegisteredBackbone] = {}
# name -> spec by task, kept up to date by register_backbone (the views ``models.BACKBONES`` and
# ``models.TRANSLATION_BACKBONES`` are these very dicts).
BACKBONES: dict[str, Any] = {}
TRANSLATION_BACKBONES: dict[str, Any] = {}
_BY_TASK = {"segmentation": BACKBONES, "translation": TRANSLATION_BACKBONES}
_discovered = False


def _check_task(task: str) -> None:
    if task not in BACKBONE_TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {list(BACKBONE_TASKS)}")


def register_family(family: BackboneFamily) -> BackboneFamily:
    """Register ``family`` (once per name, each spec class in one family); returns it."""
    _check_task(family.task)
    if family.name in _FAMILIES:
        raise ValueError(f"backbone family {family.name!r} is registered twice")
    taken = [other.name for other in _FAMILIES.values() if other.spec_type is family.spec_type]
    if taken:
        raise ValueError(f"family {family.name!r}: spec class {family.spec_type.__name__} is family {taken[0]!r}'s")
    if family.task == "segmentation" and (family.encoder is None or family.decoder is None):
        raise ValueError(f"segmentation family {family.name!r} needs an encoder and a decoder")
    _FAMILIES[family.name] = family
    return family


def register_backbone(fn: Callable[[], Any] | None = None, *, family: BackboneFamily, name: str | None = None,
                      tiny: bool = False):
    """Register the spec ``fn()`` returns as backbone ``name`` (default: the function's name) of ``family``; the
    function is returned unchanged. ``tiny``: CPU-sized (the registry-driven tests run on it)."""

    def register(make: Callable[[], Any]) -> Callable[[], Any]:
        key = name or make.__name__
        if _FAMILIES.get(family.name) is not family:
            raise ValueError(f"backbone {key!r}: family {family.name!r} is not registered (register_family)")
        if key in _ENTRIES:
            raise ValueError(f"backbone {key!r} is registered twice")
        spec = make()
        if not isinstance(spec, family.spec_type):
            raise TypeError(f"backbone {key!r} of family {family.name!r} must be a {family.spec_type.__name__}, got "
                            f"{type(spec).__name__}")
        _ENTRIES[key] = RegisteredBackbone(key, spec, family, tiny)
        _BY_TASK[family.task][key] = spec
        return make

    return register if fn is None else register(fn)


def unregister_backbone(name: str) -> None:
    """Remove backbone ``name`` (a test's temporary one)."""
    entry = _ENTRIES.pop(name)
    del _BY_TASK[entry.family.task][name]


def unregister_family(name: str) -> None:
    """Remove family ``name`` and its backbones (a test's temporary one)."""
    for backbone in [key for key, entry in _ENTRIES.items() if entry.family.name == name]:
        unregister_backbone(backbone)
    del _FAMILIES[name]


def discover() -> None:
    """Import every module of ``fusionlab.models.backbones`` (each registers its family and backbones); again after
    a module was added to the package's path."""
    global _discovered
    _discovered = True  # before the imports: a module that looks a backbone up while they run sees those so far
    try:
        importlib.import_module(BACKBONES_PACKAGE).import_all()
    except BaseException:
        _discovered = False
        raise


def _ensure_discovered() -> None:
    if not _discovered:
        discover()


def list_backbones(pattern: str = "*", task: str | None = "segmentation", *, family: str | None = None,
                   tiny: bool | None = None) -> list[str]:
    """Registered backbone names matching ``pattern`` of ``task`` (None: every task's), of ``family`` (a name), tiny
    or not (None: both)."""
    _ensure_discovered()
    if task is not None:
        _check_task(task)
    return sorted(key for key, entry in _ENTRIES.items()
                  if fnmatch.fnmatch(key, pattern) and task in (None, entry.family.task)
                  and family in (None, entry.family.name) and tiny in (None, entry.tiny))


def list_families(task: str | None = "segmentation") -> list[str]:
    _ensure_discovered()
    return sorted(key for key, family in _FAMILIES.items() if task in (None, family.task))


def get_family(name: str) -> BackboneFamily:
    _ensure_discovered()
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown backbone family {name!r}; expected one of {sorted(_FAMILIES)}") from None


def backbone_entry(name: str, task: str = "segmentation") -> RegisteredBackbone:
    """The registered backbone ``name`` of ``task``; a ValueError naming the known ones otherwise."""
    _ensure_discovered()
    _check_task(task)
    entry = _ENTRIES.get(name)
    if entry is None or entry.family.task != task:
        what = "backbone" if task == "segmentation" else f"{task} backbone"
        raise ValueError(f"unknown {what} {name!r}; expected one of {sorted(_BY_TASK[task])}")
    return entry


def get_backbone(name: Any, task: str = "segmentation") -> Any:
    """The spec of backbone ``name`` of ``task``, or ``name`` itself when it is a spec of one of the task's families
    (any ``layers``: the golden vectors'; a scaled one: ``model.width``)."""
    if not isinstance(name, str) and _spec_family(name, task) is not None:
        return name
    return backbone_entry(name, task).spec


def _spec_family(spec: Any, task: str) -> BackboneFamily | None:
    _ensure_discovered()
    return next((family for family in _FAMILIES.values()
                 if family.task == task and isinstance(spec, family.spec_type)), None)


def family_of(backbone: Any, task: str = "segmentation") -> BackboneFamily:
    """The family of backbone ``backbone`` (a name or a spec) of ``task``."""
    family = _spec_family(get_backbone(backbone, task), task)
    assert family is not None  # get_backbone returned a registered family's spec
    return family


def backbone_family(backbone: Any, task: str = "segmentation") -> str:
    """The family's name (``resnet``, ``xception``, ``mit``, ``unet``, ...): what a model's fusion operates on."""
    return family_of(backbone, task).name


def encoder_types() -> tuple[type, ...]:
    """The encoder classes of the families that have one (``FusionModel.encoders`` looks for these)."""
    _ensure_discovered()
    return tuple(family.encoder_type for family in _FAMILIES.values() if family.encoder_type is not None)


def family_of_encoder(encoder: Any) -> BackboneFamily:
    """The family whose encoder ``encoder`` is (a subclass counts: TokenFusion's MiT is a MiT)."""
    _ensure_discovered()
    for family in _FAMILIES.values():
        if family.encoder_type is not None and isinstance(encoder, family.encoder_type):
            return family
    raise ValueError(f"{type(encoder).__name__} is no registered family's encoder")
