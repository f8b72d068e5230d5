"""A run's config is part of its identity: what may change when a run is started again under the same name.

Starting a run whose name already has a checkpoint or an MLflow run resumes it. Resuming with other settings would
train something else under the old record (another model on a CEN checkpoint, another lambda under the old params),
so it is refused, naming the keys, unless every key that differs is one that does not change what is trained
(``SAFE_TO_CHANGE``): those are recorded on the MLflow run (``tracking.runs.record_changes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from .params import with_current_keys
from .paths import PATH_KEYS
from .tree import ConfigError, flatten

# Keys (or prefixes ending in ".") whose change leaves the trained model's definition alone: how long and how often,
# where it runs and is tracked, and speed switches that do not change the maths. data.path may move: the dataset's
# identity is its manifest digest, checked on its own.
SAFE_TO_CHANGE = ("train.epochs", "train.val_every", "train.val_batch_size", "train.checkpoint_every",
                  "train.keep_checkpoints", "train.channels_last", "train.fused", "train.cudnn_benchmark",
                  "train.compile", "train.compile_backend", "resources.", "tracking.", "data.path", "search", "recipe")


@dataclass(frozen=True)
class Change:
    key: str
    before: str
    after: str

    @property
    def safe(self) -> bool:
        return any(self.key == key or (key.endswith(".") and self.key.startswith(key)) for key in SAFE_TO_CHANGE)

    def __str__(self) -> str:
        return f"{self.key}: {self.before} -> {self.after}"


def as_param(value: Any) -> str:
    """A config value as MLflow stores it in a run's params (``RunTracker.open``)."""
    return str(value)[:6000]


def config_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    """Keys whose value differs, compared as params, each under its current name (a run from before
    ``model.params`` recorded ``model.cen.lambda``). A key only one side has (a field added or removed between
    fusionlab versions) is not compared: it cannot say what the other side ran with."""
    before, after = with_current_keys(before), with_current_keys(after)
    return [Change(key, as_param(before[key]), as_param(after[key])) for key in sorted(before.keys() & after.keys())
            if as_param(before[key]) != as_param(after[key]) and not made_absolute(key, before[key], after[key])]


def made_absolute(key: str, before: Any, after: Any) -> bool:
    """A run from before every path was made absolute at load (``config/paths.py``) recorded ``model.pretrained`` as
    written (``weights/x.pth``): the same path now absolute, ending in it, is no change."""
    if key not in PATH_KEYS or not isinstance(before, str) or not isinstance(after, str) or "://" in before:
        return False
    written, now = PurePath(before), PurePath(after)
    return not written.is_absolute() and now.is_absolute() and now.parts[-len(written.parts):] == written.parts


def dataset_change(before: str | None, after: str) -> Change | None:
    if before and before != after:
        return Change("dataset (manifest sha256)", before, after)
    return None


def refuse_unsafe(changes: list[Change], run_name: str, where: str) -> list[Change]:
    """The safe changes; a ConfigError naming every unsafe one (and the way out) if there is any."""
    unsafe = [change for change in changes if not change.safe]
    if unsafe:
        allowed = ", ".join(key + "*" if key.endswith(".") else key for key in SAFE_TO_CHANGE)
        raise ConfigError(
            f"run {run_name!r} already exists ({where}) and was trained with other settings: "
            f"{'; '.join(map(str, unsafe))}. Resuming it would train something else under its name. Give this config "
            f"its own run (tracking.run_name=NEW_NAME) or set these keys back; only {allowed} may change when a run "
            f"is resumed")
    return [change for change in changes if change.safe]


def checkpoint_changes(state: Mapping[str, Any], config: Any, manifest_digest: str) -> list[Change]:
    """What differs between the config (and dataset) a checkpoint was written with and ``config``."""
    changes = config_changes(flatten(state.get("config") or {}),
                             flatten(config.model_dump(mode="json", by_alias=True)))
    data = dataset_change(state.get("manifest_sha256"), manifest_digest)
    return [*changes, data] if data else changes
