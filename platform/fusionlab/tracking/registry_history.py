"""The model registry read back: the registered models, and one model's versions newest first (its promotions, each
recorded on its version by ``registry.promote`` under the ``fusionlab.promotion.`` tags)."""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .filters import attribute_equals
from .registry import RegistryError, is_missing, registry_client
from .tags import PromotionTags


@dataclass(frozen=True)
class ModelSummary:
    name: str
    latest_version: str | None
    aliases: dict[str, str]  # alias -> version
    last_promoted_at: str | None
    tags: dict[str, str]


@dataclass(frozen=True)
class VersionRecord:
    version: str
    aliases: list[str]
    run_id: str | None
    run_name: str | None
    metric: str | None
    value: str | None
    previous_version: str | None
    previous_value: str | None
    forced: str | None
    promoted_at: str | None
    tags: dict[str, str]


def _versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    versions, token = [], None
    while True:
        page = client.search_model_versions(attribute_equals("name", name), page_token=token)
        versions.extend(page)
        token = page.token
        if not token:
            return sorted(versions, key=lambda v: int(v.version), reverse=True)


def _registered_models(client: MlflowClient) -> list:
    models, token = [], None
    while True:
        page = client.search_registered_models(page_token=token)
        models.extend(page)
        token = page.token
        if not token:
            return sorted(models, key=lambda m: m.name)


def registered_models(uri: str) -> list[ModelSummary]:
    client = registry_client(uri)
    summaries = []
    for model in _registered_models(client):
        versions = _versions(client, model.name)
        promoted = [v.tags[PromotionTags.PROMOTED_AT] for v in versions if PromotionTags.PROMOTED_AT in v.tags]
        summaries.append(ModelSummary(model.name, str(versions[0].version) if versions else None,
                                      {alias: str(v) for alias, v in model.aliases.items()},
                                      max(promoted) if promoted else None, dict(model.tags)))
    return summaries


def promotion_history(uri: str, name: str) -> list[VersionRecord]:
    """Every version of the registered model, newest first (one version per promotion: its history)."""
    client = registry_client(uri)
    try:
        model = client.get_registered_model(name)
    except MlflowException as error:
        if not is_missing(error):
            raise
        known = [m.name for m in _registered_models(client)]
        raise RegistryError(f"no registered model {name!r}; the registry has "
                            f"{', '.join(known) if known else 'none (promote one with fusionlab promote)'}") from None
    by_version: dict[str, list[str]] = {}
    for alias, version in model.aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    records = []
    for version in _versions(client, name):
        tags = dict(version.tags)
        run_name = tags.get(PromotionTags.RUN_NAME)
        if run_name is None and version.run_id:  # a version registered by hand, not by promote
            try:
                run_name = client.get_run(version.run_id).info.run_name
            except MlflowException:
                run_name = None
        records.append(VersionRecord(str(version.version), sorted(by_version.get(str(version.version), [])),
                                     version.run_id, run_name, tags.get(PromotionTags.METRIC),
                                     tags.get(PromotionTags.VALUE), tags.get(PromotionTags.PREVIOUS_VERSION),
                                     tags.get(PromotionTags.PREVIOUS_VALUE), tags.get(PromotionTags.FORCED),
                                     tags.get(PromotionTags.PROMOTED_AT), tags))
    return records
