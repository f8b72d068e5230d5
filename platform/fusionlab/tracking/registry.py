"""The model registry: promote the best training run under an alias (``champion``), guarded, with its history
(read back by ``registry_history.py``).

MLflow aliases keep no history, so every promotion registers a new version and records on it, as tags under
``fusionlab.promotion.``, what it replaced and why (docs/results.md). Stages are never used.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import mlflow
import mlflow.artifacts
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fusionlab.errors import FusionlabError
from fusionlab.models.model_files import SPEC_FILE

from . import store
from .filters import attribute_equals, tag_equals
from .lifecycle import effective_params
from .runs import MODEL_NAME
from .store import registry_client
from .tags import DATASET_TAG, KIND_TAG, MANIFEST_TAG, TASK_TAG, PromotionTags

try:  # 100,000 in MLflow 3.17 (a run tag's limit is 8,000)
    from mlflow.utils.validation import MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH as TAG_VALUE_LIMIT
except ImportError:  # pragma: no cover - an MLflow that moved it: the older, smaller limit is safe
    TAG_VALUE_LIMIT = 5000

TRUNCATED = "...[truncated]"


class RegistryError(FusionlabError):
    """Bad input for the registry (no candidates, mixed datasets, an unknown model); the message says which."""


class PromotionRefused(RegistryError):
    """The guard kept the current alias holder; ``reasons`` say why. ``--force`` overrides it."""

    def __init__(self, message: str, reasons: Sequence[str]):
        super().__init__(message)
        self.reasons = list(reasons)


@dataclass(frozen=True)
class Candidate:
    run_id: str
    run_name: str
    experiment: str
    value: float
    dataset: str
    task: str
    manifest: str
    params: dict[str, str] = field(repr=False)
    start_time: int = 0

    @property
    def model_uri(self) -> str:
        return f"runs:/{self.run_id}/{MODEL_NAME}"


@dataclass(frozen=True)
class Holder:
    """The version an alias points at, scored by its source run's metric (now, not as recorded)."""

    version: str
    run_id: str
    run_name: str | None  # None: the source run no longer exists
    value: float | None
    manifest: str | None


@dataclass(frozen=True)
class Promotion:
    name: str
    alias: str
    metric: str
    mode: str
    candidate: Candidate
    candidates: int
    previous: Holder | None
    version: str | None  # None when nothing changed: the candidate's run already held the alias
    forced: bool = False
    overridden: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # why each better-scoring run was passed over (no model it can register)

    @property
    def unchanged(self) -> bool:
        return self.version is None




def model_name(dataset: str, task: str) -> str:
    """The registered-model name per dataset and task: ``synthetic-rgbd-segmentation``."""
    slug = re.sub(r"[^a-z0-9._]+", "-", f"{dataset}-{task}".lower())
    return re.sub(r"-{2,}", "-", slug).strip("-._") or "model"


def is_missing(error: MlflowException) -> bool:
    """The registry's answer for a model, version or alias that does not exist."""
    return error.error_code == "RESOURCE_DOES_NOT_EXIST"


def find_candidates(client: MlflowClient, experiments: Sequence[str], metric: str) -> list[Candidate]:
    """Finished training runs (never sweep or grid parents) of the experiments that have ``metric``."""
    found: list[Candidate] = []
    names = {}
    for name in experiments:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            known = sorted(e.name for e in client.search_experiments())
            raise RegistryError(f"no experiment {name!r} in the tracking store; it has {known}")
        names[experiment.experiment_id] = name
    query = f"{tag_equals(KIND_TAG, 'train')} and {attribute_equals('attributes.status', 'FINISHED')}"
    token = None
    while True:
        page = client.search_runs(list(names), filter_string=query, max_results=1000, page_token=token)
        for run in page:
            value = run.data.metrics.get(metric)  # the metric's latest value (its highest step)
            if value is None or not math.isfinite(value):
                continue
            tags = run.data.tags
            found.append(Candidate(run.info.run_id, run.info.run_name or run.info.run_id,
                                   names[run.info.experiment_id], float(value), tags.get(DATASET_TAG, "?"),
                                   tags.get(TASK_TAG, "?"), tags.get(MANIFEST_TAG, ""), effective_params(run),
                                   run.info.start_time or 0))
        token = page.token
        if not token:
            return found


def best_candidate(candidates: Sequence[Candidate], mode: str = "max") -> Candidate:
    """The best by ``mode``; ties go to the run that started first."""
    return min(candidates, key=ranking(mode))


def ranking(mode: str):
    """Sort key of candidates, best first."""
    sign = -1.0 if mode == "max" else 1.0
    return lambda c: (sign * c.value, c.start_time, c.run_id)


def best_with_model(client: MlflowClient, candidates: Sequence[Candidate], mode: str
                    ) -> tuple[Candidate, tuple[str, str | None], tuple[str, ...]]:
    """The best candidate that has a model to register, its model source, and why each better one was skipped (a
    run that finished without a model it can register must not block promotion)."""
    skipped = []
    for candidate in sorted(candidates, key=ranking(mode)):
        try:
            return candidate, _model_source(client, candidate.run_id), tuple(skipped)
        except RegistryError as error:  # its message says why: no model, or not a fusionlab model
            skipped.append(str(error))
    raise RegistryError(f"none of the {len(candidates)} candidate run(s) has a model to register: "
                        + "; ".join(skipped))


def _check_comparable(candidates: Sequence[Candidate], metric: str) -> None:
    """One registered model per dataset and task, and scores only from the same dataset version."""
    groups: dict[tuple[str, str], list[str]] = {}
    for c in candidates:
        groups.setdefault((c.dataset, c.task), []).append(c.run_name)
    if len(groups) > 1:
        listed = "; ".join(f"dataset {dataset!r} task {task!r}: {sorted(runs)}"
                           for (dataset, task), runs in sorted(groups.items()))
        raise RegistryError(f"the candidates come from {len(groups)} datasets/tasks, one registered model each: "
                            f"{listed}. Promote one at a time (one --experiment, or --name per dataset)")
    versions: dict[str, list[str]] = {}
    for c in candidates:
        versions.setdefault(c.manifest, []).append(c.run_name)
    if len(versions) > 1:
        listed = "; ".join(f"{digest[:12] or 'none'}: {sorted(runs)}" for digest, runs in sorted(versions.items()))
        raise RegistryError(f"the candidates were trained on {len(versions)} versions of dataset "
                            f"{candidates[0].dataset!r} (manifest sha256 {listed}): their {metric} values are not "
                            f"comparable")


def current_holder(client: MlflowClient, name: str, alias: str, metric: str) -> Holder | None:
    try:
        model = client.get_registered_model(name)
    except MlflowException as error:
        if is_missing(error):
            return None
        raise
    if alias not in model.aliases:  # (a missing alias is an INVALID_PARAMETER_VALUE error, not a "missing")
        return None
    version = client.get_model_version_by_alias(name, alias)
    try:
        run = client.get_run(version.run_id) if version.run_id else None
    except MlflowException as error:
        if not is_missing(error):
            raise
        run = None
    if run is None:
        return Holder(str(version.version), version.run_id or "", None, None, None)
    value = run.data.metrics.get(metric)
    return Holder(str(version.version), version.run_id, run.info.run_name or version.run_id,
                  value if value is not None and math.isfinite(value) else None, run.data.tags.get(MANIFEST_TAG))


def guard(holder: Holder | None, candidate: Candidate, metric: str, mode: str) -> list[str]:
    """Why the candidate must not replace the holder (empty: it may)."""
    if holder is None:
        return []
    who = f"the holder, version {holder.version} (run {holder.run_name or '?'}, {holder.run_id}),"
    if holder.run_name is None:
        return [f"{who} has lost its source run: its {metric} cannot be compared"]
    reasons = []
    if holder.manifest != candidate.manifest:
        reasons.append(f"{who} was trained on another version of the dataset (manifest sha256 "
                       f"{(holder.manifest or 'none')[:12]}, the candidate's {candidate.manifest[:12] or 'none'}): "
                       f"the scores are not comparable")
    if holder.value is None:
        reasons.append(f"{who} has no {metric} in its run: it cannot be compared")
    elif (holder.value > candidate.value) if mode == "max" else (holder.value < candidate.value):
        reasons.append(f"{who} has {metric} {holder.value:.6g}, better ({mode}) than the candidate's "
                       f"{candidate.value:.6g}")
    return reasons


def _fit(value: str) -> str:
    if len(value) <= TAG_VALUE_LIMIT:
        return value
    return value[:TAG_VALUE_LIMIT - len(TRUNCATED)] + TRUNCATED


def _model_source(client: MlflowClient, run_id: str) -> tuple[str, str | None]:
    """(source, model id) of the run's model, as ``mlflow.register_model`` resolves ``runs:/<id>/model``.

    MLflow 3 logs a model as a logged model (``models:/<model id>``); older runs keep it under their artifacts.
    Either must be fusionlab's weights plus spec (models/model_files.py): a pickled model is not registered, as
    ``load_model`` would refuse it. (``client.list_artifacts(run_id, ...)`` would resolve logged models through the
    global tracking URI.)"""
    run = client.get_run(run_id)
    models = [m for m in client.search_logged_models([run.info.experiment_id],
                                                     filter_string=attribute_equals("name", MODEL_NAME))
              if m.source_run_id == run_id]
    if models:
        latest = max(models, key=lambda m: m.creation_timestamp)
        source, model_id, location = f"models:/{latest.model_id}", latest.model_id, latest.artifact_location
    else:
        source = location = f"{run.info.artifact_uri}/{MODEL_NAME}"
        model_id = None
    files = {a.path.rsplit("/", 1)[-1] for a in
             mlflow.artifacts.list_artifacts(artifact_uri=location, tracking_uri=client.tracking_uri)}
    if "MLmodel" not in files:
        raise RegistryError(f"run {run.info.run_name} ({run_id}) has no logged model {MODEL_NAME!r} to register")
    if SPEC_FILE not in files:
        raise RegistryError(f"run {run.info.run_name} ({run_id}): its model {source} is not a fusionlab model "
                            f"(weights plus {SPEC_FILE}) and is not registered; a model saved as a pickle by an "
                            "older fusionlab is never loaded: retrain or re-import it")
    return source, model_id


def _ensure_registered_model(client: MlflowClient, name: str, candidate: Candidate) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if not is_missing(error):
            raise
        client.create_registered_model(
            name, tags={DATASET_TAG: candidate.dataset, TASK_TAG: candidate.task},
            description=f"{candidate.task} models for the {candidate.dataset} dataset, promoted by fusionlab "
                        f"(`fusionlab promote`); aliases point at the current holders, version tags "
                        f"`{PromotionTags.PREFIX}*` record each promotion.")


def promote(uri: str, experiments: Sequence[str], metric: str = "val/miou", mode: str = "max",
            alias: str = "champion", name: str | None = None, force: bool = False) -> Promotion:
    """Register the best candidate of the experiments as a new version and move ``alias`` to it.

    Raises ``PromotionRefused`` when the current holder is better, was trained on other data or cannot be scored
    (unless ``force``), and ``RegistryError`` for bad input."""
    if mode not in ("max", "min"):
        raise RegistryError(f"mode must be 'max' or 'min', got {mode!r}")
    if not re.fullmatch(r"[\w-]+", alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise RegistryError(f"alias {alias!r}: use letters, digits, '_' and '-'; 'latest' and v<number> are reserved")
    if not experiments:
        raise RegistryError("give at least one experiment")
    client = registry_client(uri)
    candidates = find_candidates(client, experiments, metric)
    if not candidates:
        raise RegistryError(f"no finished training run with {metric} in experiment(s) {list(experiments)} "
                            f"(segmentation runs log val/miou; translation runs val/fid: --metric val/fid --mode min)")
    _check_comparable(candidates, metric)
    best, (source, model_id), skipped = best_with_model(client, candidates, mode)
    name = name or model_name(best.dataset, best.task)
    holder = current_holder(client, name, alias, metric)
    if holder is not None and holder.run_id == best.run_id:
        return Promotion(name, alias, metric, mode, best, len(candidates), holder, None, skipped=skipped)
    reasons = guard(holder, best, metric, mode)
    if reasons and not force:
        raise PromotionRefused(f"{best.run_name} ({best.run_id}, {metric} {best.value:.6g}) was not promoted to "
                               f"{name}@{alias}: " + "; ".join(reasons) + ". --force promotes it anyway.", reasons)
    _ensure_registered_model(client, name, best)
    previous_value = "none" if holder is None or holder.value is None else repr(holder.value)
    tags = {
        PromotionTags.PREVIOUS_VERSION: holder.version if holder else "none",
        PromotionTags.PREVIOUS_RUN_ID: holder.run_id if holder else "none",
        PromotionTags.PREVIOUS_VALUE: previous_value,
        PromotionTags.METRIC: metric,
        PromotionTags.VALUE: repr(best.value),
        PromotionTags.MODE: mode,
        PromotionTags.RUN_ID: best.run_id,
        PromotionTags.RUN_NAME: best.run_name,
        PromotionTags.EXPERIMENT: best.experiment,
        PromotionTags.CONFIG: _fit(json.dumps(dict(sorted(best.params.items())), separators=(",", ":"))),
        PromotionTags.MANIFEST: best.manifest or "none",
        PromotionTags.MODEL_URI: best.model_uri,
        PromotionTags.ALIAS: alias,
        PromotionTags.PROMOTED_AT: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        PromotionTags.FORCED: "true" if force else "false",
    }
    if force and reasons:
        tags[PromotionTags.OVERRIDDEN] = _fit("; ".join(reasons))
    # MLflow's SQL registry store finds a logged model (models:/<model id>) through the global tracking URI (its
    # own TODO), as RunTracker.log_model and load_model also set it. create_model_version waits (up to 300 s) for
    # READY and raises if registration fails.
    with store.global_store(uri):
        version = client.create_model_version(name, source, run_id=best.run_id, tags=tags, model_id=model_id,
                                              description=f"{best.run_name}: {metric} {best.value:.6g}")
    if version.status != "READY":
        version = client.get_model_version(name, version.version)
        if version.status != "READY":
            raise RegistryError(f"{name} version {version.version} is {version.status}: {version.status_message}")
    client.set_registered_model_alias(name, alias, version.version)
    return Promotion(name, alias, metric, mode, best, len(candidates), holder, str(version.version), force,
                     tuple(reasons), skipped)
