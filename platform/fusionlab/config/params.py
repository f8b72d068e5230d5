"""``model.params``: validated against the params class the model declares for its task (``models/params.py``).

The class's fields become a strict pydantic section (``int`` is the config's ``Int``, ``float`` its ``Float``, bounds
from a field's metadata), so an unknown or ill-typed key is reported as ``model.params.<key>`` like any other key.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from pydantic import BaseModel, Field, create_model

from .types import Bool, Float, Int, Section

_STRICT = {int: Int, float: Float, bool: Bool}
# Where each removed model key went, for the one-line refusal.
MOVED_KEYS = {
    "cen": "CEN's parameters moved to model.params (model.cen.lambda -> model.params.lambda)",
    "asymfusion": "AsymFusion's parameters moved to model.params (model.asymfusion.shuffle_groups -> "
                  "model.params.shuffle_groups)",
    "modality": "unimodal's modality moved to model.params.modality",
    "rcu_residual": "moved to model.params.rcu_residual (the RefineNet segmenters' parameter)",
}


def current_key(key: str) -> str:
    """A dotted config key as it is named now: runs and checkpoints from before ``model.params`` recorded
    ``model.cen.lambda``, ``model.asymfusion.shuffle_groups``, ``model.modality`` and ``model.rcu_residual``."""
    for old in ("model.cen.", "model.asymfusion."):
        if key.startswith(old):
            return "model.params." + key.removeprefix(old)
    return {"model.modality": "model.params.modality", "model.rcu_residual": "model.params.rcu_residual"}.get(key, key)


def with_current_keys(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted parameters under their current names (``current_key``); a current key wins over an old one."""
    renamed = {current_key(key): value for key, value in flat.items() if current_key(key) != key}
    return {**renamed, **{key: value for key, value in flat.items() if current_key(key) == key}}


def _strict(annotation: Any) -> Any:
    """``annotation`` with int/float/bool replaced by the config's strict types, inside unions and containers."""
    if annotation in _STRICT:
        return _STRICT[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is None or origin is Literal or not args:
        return annotation
    if origin in (Union, types.UnionType):
        return Union[tuple(_strict(arg) for arg in args)]  # noqa: UP007 (built from a tuple)
    if origin is tuple and args[-1] is Ellipsis:
        return list[_strict(args[0])]  # a YAML or JSON list; the constructor takes any sequence
    return origin[tuple(_strict(arg) for arg in args)]


@functools.cache
def params_section(params: type) -> type[BaseModel]:
    """The strict config section of a params dataclass (fields keyed by their config keys)."""
    hints = typing.get_type_hints(params)
    fields = {}
    for item in dataclasses.fields(params):
        bounds = {bound: item.metadata[bound] for bound in ("ge", "gt", "le") if bound in item.metadata}
        default = item.default
        if isinstance(default, tuple):
            default = list(default)  # the section's list[...] of a tuple[..., ...] field
        fields[item.name] = (_strict(hints[item.name]),
                             Field(default, alias=item.metadata.get("key", item.name), **bounds))
    return create_model(f"{params.__name__}Section", __base__=Section, **fields)


def params_class_for(name: str, backbone: str) -> type:
    """Model ``name``'s params class for the task of ``backbone`` (``ValueError`` where it is no model of it)."""
    from fusionlab.models.registry import params_class

    return params_class(name, task_of(backbone))


def task_of(backbone: Any) -> str:
    """Translation runs are the ones on a translation backbone (the U-Nets); the config validates the pairing."""
    from fusionlab.models import TRANSLATION_BACKBONES

    return "translation" if backbone in TRANSLATION_BACKBONES else "segmentation"


def validate_params(name: str, backbone: str, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` checked against model ``name``'s params class for the task of ``backbone``, every default made
    explicit (JSON values, keyed by config key)."""
    section = params_section(params_class_for(name, backbone))
    return section.model_validate(values).model_dump(mode="json", by_alias=True)


def model_params(name: str, backbone: str, values: dict[str, Any]):
    """The params instance of validated ``values`` (``models.params.ModelParams``)."""
    return params_class_for(name, backbone).from_config(values)


def param_fields(name: str, backbone: str) -> set[str] | None:
    """The config keys model ``name`` on ``backbone`` takes under ``model.params``; None where ``name`` is no model of
    the backbone's task."""
    try:
        return set(params_class_for(name, backbone).config_keys())
    except ValueError:
        return None
