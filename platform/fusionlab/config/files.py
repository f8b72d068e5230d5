"""Configs from YAML files and trees: read, overridden with ``--set``, their paths made absolute (``paths.py``) and
validated. No dataset is read here: ``train/prepare.py`` synthesises it where asked and checks the config against
it, before a run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .paths import absolute_paths
from .schema import Config
from .tree import ConfigError, apply_overrides, describe_validation_error


def validate_config(tree: dict[str, Any], origin: str = "config") -> Config:
    """The schema alone: no file is read."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{origin}: expected {_SECTIONS}; got a {_yaml_type(tree)}")
    try:
        return Config.model_validate(tree)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, origin)) from None


_SECTIONS = "a mapping with sections data, model, train, resources, tracking"


def read_yaml_file(path: str | os.PathLike, kind: str = "config") -> Any:
    """The YAML document in ``path`` (None for an empty file); ``ConfigError`` naming the file for one that is not
    there, a directory, unreadable, not UTF-8 text or not YAML. ``kind`` names it in the messages."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{kind} file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; expected a {kind} file (YAML)") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not a YAML {kind} file: not UTF-8 text (byte {error.start}: "
                          f"{error.reason})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the {kind} file: {error.strerror or error}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML ({error})") from None


def read_config(path: str | os.PathLike, overrides: list[str] | None = None) -> Config:
    """The config file at ``path`` with ``--set`` ``overrides``, its relative paths made absolute against the file's
    directory, validated (``train.prepare.load_config`` also prepares it against its dataset)."""
    path = Path(path)
    tree = read_yaml_file(path, "config")
    if tree is None:
        raise ConfigError(f"{path}: the file is empty; expected {_SECTIONS}")
    if not isinstance(tree, dict):  # before --set, which sets keys in a mapping
        raise ConfigError(f"{path}: expected {_SECTIONS}; the file's top level is a {_yaml_type(tree)}")
    tree = apply_overrides(tree, overrides or [])
    tree = absolute_paths(tree, path.parent)
    return validate_config(tree, origin=str(path))



def _yaml_type(value: Any) -> str:
    """What a YAML document's top level is, as its author would call it: ``list``, ``string ('hello')``."""
    names = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}
    name = names.get(type(value), type(value).__name__)
    return f"{name} ({value!r})" if isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 40 else name
