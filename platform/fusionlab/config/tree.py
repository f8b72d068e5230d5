"""Config trees: dotted keys (``train.epochs``), ``--set`` overrides, and pydantic errors as one line per key."""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import ValidationError


class ConfigError(ValueError):
    """A bad config: the message names the file, the dotted key and what was expected."""



def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["train.epochs=2", "model.params.lambda=1e-3"]`` applied to a nested dict (values parsed as YAML)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as error:
            detail = " ".join(str(getattr(error, "problem", None) or error).split())
            raise ConfigError(f"--set {item}: the value {raw!r} is not YAML ({detail}); quote a string, e.g. "
                              f"--set '{key.strip()}=\"...\"'") from None
        tree = set_dotted(tree, key.strip(), value)
    return tree


def get_dotted(tree: dict[str, Any], key: str) -> tuple[bool, Any]:
    """``(True, value)`` at the dotted ``key`` of a nested dict, ``(False, None)`` where a part is missing."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of ``tree`` with ``value`` at the dotted ``key`` (intermediate mappings created as needed)."""
    tree = dict(tree)
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        node[part] = dict(child) if isinstance(child, dict) else {}
        node = node[part]
    node[parts[-1]] = value
    return tree


def describe_validation_error(error: ValidationError, origin: str) -> str:
    return f"{origin}: invalid config\n" + "\n".join(validation_error_lines(error))


# The parts of an error's location that name a member of a union (``bool | Literal["auto"]``), not a key.
_UNION_MEMBER = re.compile(r"[\[\]()',]|^(bool|int|float|str)$")

def validation_error_lines(error: ValidationError) -> list[str]:
    """One line per key; a value a union refuses is one line with each member's reason."""
    reasons: dict[str, list[str]] = {}
    got: dict[str, str] = {}
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:  # a check across sections: its message names the keys
            reasons.setdefault(f"  {message}", [])
            continue
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        key = ".".join(str(part) for part in item["loc"] if not _UNION_MEMBER.search(str(part)))
        # a "secret" error's value holds credentials (resources.storage_path): not written out
        got.setdefault(key, f" (got {item['input']!r})"
                       if item["type"] not in ("missing", "extra_forbidden", "secret") else "")
        if message not in reasons.setdefault(key, []):
            reasons[key].append(message)
    return [f"  {key}: {' or '.join(messages)}{got[key]}" if messages else key for key, messages in reasons.items()]

