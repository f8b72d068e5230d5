"""The one resolution step between a validated config and a run, taken before training by ``fusionlab train``, each
grid cell and each sweep trial: the synthetic dataset written where the config asks for one, then the config checked
against the dataset's manifest (task, modalities) and its default modalities made explicit (they are then recorded).
``fusionlab.config`` itself is pure: it reads the config's file, never the dataset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fusionlab.config import (
    Config,
    ConfigError,
    DataConfig,
    describe_validation_error,
    read_config,
    set_dotted,
    validate_config,
)
from fusionlab.config.paths import is_remote


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> Config:
    """The config file at ``path`` (with ``--set`` ``overrides``), validated (``config.read_config``) and prepared
    here."""
    return prepare(read_config(path, overrides), origin=str(path))


def parse_config(tree: dict[str, Any], origin: str = "config") -> Config:
    """A config tree validated (``config.validate_config``) and prepared here."""
    return prepare(validate_config(tree, origin), origin)


def prepare(config: Config, origin: str = "config") -> Config:
    """``config`` ready to run here: its data synthesised if asked, checked against the local dataset. A remote
    ``data.path`` (``s3://...``) is returned unchanged: the workers that read it check it."""
    if is_remote(config.data.path):
        return config
    synthesize(config.data)
    return resolve_modalities(config, origin)


def synthesize(data: DataConfig) -> None:
    """``data.synthesize``: write the synthetic dataset at ``data.path`` if none is there (so a fresh clone runs)."""
    target = Path(data.path)
    if data.synthesize is None or is_remote(data.path) or (target / "manifest.json").is_file():
        return
    from fusionlab.data.synthetic import write_synthetic
    from fusionlab.data.synthetic_translation import write_synthetic_translation

    spec = data.synthesize
    write = write_synthetic_translation if spec.task == "translation" else write_synthetic
    write(target, train=spec.train, val=spec.val, test=spec.test, size=spec.size, seed=spec.seed)


def resolve_modalities(config: Config, origin: str) -> Config:
    """Check ``data.modalities`` against the local dataset and make the default explicit."""
    from fusionlab.data import DatasetError, Manifest

    try:
        manifest = Manifest.load(config.data.path)
    except DatasetError as error:
        raise ConfigError(f"{origin}: data.path: {error} (create a dataset with `fusionlab data synth` or "
                          f"`fusionlab data convert`)") from None
    check_task(config, manifest, origin)
    available = [m for m in manifest.modalities if m != manifest.target]
    chosen = config.data.modalities or available
    unknown = [m for m in chosen if m not in available]
    if unknown:
        raise ConfigError(f"{origin}: data.modalities: {unknown} not in dataset {manifest.name!r}, which has "
                          f"{available}")
    if config.data.modalities == chosen:
        return config
    tree = set_dotted(config.model_dump(mode="json", by_alias=True), "data.modalities", chosen)
    try:
        return Config.model_validate(tree)
    except ValidationError as error:  # e.g. a fusion model on a dataset with one modality
        raise ConfigError(describe_validation_error(error, origin)) from None


def check_task(config: Config, manifest, origin: str) -> None:
    """The model and backbone must be ones for the dataset's task (segmentation or translation)."""
    from fusionlab.models import BACKBONES, TRANSLATION_BACKBONES, list_models

    backbones = TRANSLATION_BACKBONES if manifest.task == "translation" else BACKBONES
    models = list_models(task=manifest.task)
    if config.model.name not in models:
        raise ConfigError(f"{origin}: model.name: {config.model.name!r} is not a {manifest.task} model (dataset "
                          f"{manifest.name!r} is {manifest.task}); expected one of {models}")
    if config.model.backbone not in backbones:
        raise ConfigError(f"{origin}: model.backbone: {config.model.backbone!r} is not a {manifest.task} backbone "
                          f"(dataset {manifest.name!r}); expected one of {sorted(backbones)}")
    if config.search is not None:
        others = ("/fid", "/kid") if manifest.task == "segmentation" else ("/miou", "/pixel_acc", "/mean_acc")
        if config.search.metric.endswith(others):
            hint = "val/fid with search.mode min" if manifest.task == "translation" else "val/miou"
            raise ConfigError(f"{origin}: search.metric: {config.search.metric!r} is not logged by {manifest.task} "
                              f"runs (dataset {manifest.name!r}); use e.g. {hint}")


def check_batch_fits(config: Config, workers: int) -> None:
    """Training drops the last incomplete batch: a train.batch_size above a worker's share of the train split trains
    zero steps (loss NaN, a finished run). Checked where the manifest is readable (a missing one is reported
    elsewhere); for a sweep, the largest batch its search may sample is checked too."""
    from fusionlab.data import DatasetError, Manifest

    if is_remote(config.data.path):
        return
    try:
        rows = Manifest.load(config.data.path).rows(config.data.train_split)
    except DatasetError:
        return
    sizes = {"train.batch_size": config.train.batch_size}
    searched = config.search.space.get("train.batch_size") if config.search else None
    if searched is not None:  # its values are integers: checked against the field at load
        sizes["search.space.train.batch_size"] = max(value for _, value in searched.probes())
    for key, size in sizes.items():
        if size > rows // workers:
            share = f", {rows // workers} per worker for {workers} workers" if workers > 1 else ""
            raise ConfigError(f"{key} {size} is larger than data.train_split {config.data.train_split!r} ({rows} "
                              f"rows{share}): no complete batch, no training step; use a batch size <= "
                              f"{max(rows // workers, 1)}")

