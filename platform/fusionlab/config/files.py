"""Configs from YAML files and trees: read, overridden with ``--set``, their paths made absolute (``paths.py``),
validated, then prepared (``prepare.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .paths import absolute_paths
from .prepare import prepare
from .schema import Config
from .tree import ConfigError, apply_overrides, describe_validation_error


def validate_config(tree: dict[str, Any], origin: str = "config") -> Config:
    """The schema alone: no file is read."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{origin}: expected a mapping with sections data, model, train, resources, tracking")
    try:
        return Config.model_validate(tree)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, origin)) from None


def parse_config(tree: dict[str, Any], origin: str = "config", require_data: bool = True) -> Config:
    """Validate a config tree; with ``require_data`` (default) it is also prepared (``prepare.prepare``: the local
    dataset synthesised if asked, then checked against ``data.modalities``); ``False`` for dry runs of grids whose
    data lives elsewhere."""
    config = validate_config(tree, origin)
    return prepare(config, origin) if require_data else config


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> Config:
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML ({error})") from None
    tree = apply_overrides(tree, overrides or [])
    tree = absolute_paths(tree, path.parent)
    return parse_config(tree, origin=str(path))

