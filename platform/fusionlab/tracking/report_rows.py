"""An experiment's training runs read back from MLflow as the rows of ``fusionlab report``'s table (see
``tracking/report.py``): which runs are listed, which split they are scored on, cells' seeds grouped into one row, and
what each task's table shows (``TaskMetrics``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from fusionlab.config.params import with_current_keys
from fusionlab.errors import FusionlabError
from fusionlab.fid.inception import INCEPTION_NAME
from fusionlab.models.multiscale import MULTI_SCALE_SUFFIX, SINGLE_SCALE_LABEL
from fusionlab.models.params import CENParams

from . import store
from .report_paired import PairedDifference, paired_differences
from .report_scores import NOT_RECORDED, TASKS, TRANSLATION, Row, RunScores, TaskMetrics
from .tags import (
    CELL_TAG,
    ERROR_TAG,
    EVAL_PROTOCOL_TAG,
    FID_FEATURES_TAG,
    FLOPS_TAG,
    KIND_TAG,
    MANIFEST_TAG,
    MODALITIES_TAG,
    MODEL_TAG,
    PAPER_TAG,
    PARAMETERS_TAG,
    STOPPED_EARLY_TAG,
    TASK_TAG,
)

# The CEN parameters a report varies and plots, keyed by their config keys (CENParams' fields).
CEN_SYMBOLS = {"lambda": "λ", "threshold": "θ", "portion": "portion"}
CEN_PARAMETERS = {f"model.params.{key}": CEN_SYMBOLS[key] for key in CENParams.config_keys() if key in CEN_SYMBOLS}


class ReportError(FusionlabError):
    """Nothing to report: the message names the experiment and what is missing."""


@dataclass
class Report:
    experiment: str
    split: str
    rows: list[Row]
    stopped_early: int  # sweep trials stopped by the scheduler (rows marked with the epochs they ran)
    task_name: str = "segmentation"
    fid_features: tuple[str, ...] = ()  # translation: the runs' feature extractors ("?" where a run has no tag)
    unfinished: tuple[str, ...] = ()  # runs not in the table: "<run> (<cell>): <STATUS>[: <error>]"
    paired: tuple[PairedDifference, ...] = ()  # first - second over shared seeds (report_paired.py)
    protocol: str = SINGLE_SCALE_LABEL  # how the figures were scored: the runs' fusionlab.eval_protocol when multi
    manifests: tuple[str, ...] = ()  # the dataset manifests (sha256) the rows were trained on; several only --mixed

    @property
    def task(self) -> TaskMetrics:
        return TASKS[self.task_name]

    @property
    def comparable(self) -> bool:
        """Whether our figures are on the published scale (translation: every FID from the FID Inception network)."""
        return self.task_name != "translation" or set(self.fid_features) == {INCEPTION_NAME}

    @property
    def has_paper(self) -> bool:
        """Whether the table shows published figures and ours − paper (never beside incomparable figures)."""
        return self.comparable and any(row.paper for row in self.rows)

    def best_unimodal(self, backbone: str | None = None) -> Row | None:
        """The best unimodal row (on ``backbone`` only, when given)."""
        rank = self.task.rank
        unimodal = [(row.mean(rank), row) for row in self.rows if row.unimodal and row.mean(rank) is not None
                    and backbone in (None, row.backbone)]
        return self.task.best(unimodal) if unimodal else None

    def unimodal_baselines(self) -> dict[str, Row]:
        """Each backbone's best unimodal row: what its fusion rows are measured against (a fusion model is compared
        with one modality on its own backbone, not with another network's)."""
        found = {row.backbone: self.best_unimodal(row.backbone) for row in self.rows}
        return {backbone: row for backbone, row in found.items() if row is not None}

    def baseline_gap(self, row: Row, baselines: dict[str, Row]) -> float | None:
        """``row``'s ranking metric minus its backbone's best unimodal row's (``baselines``, from
        ``unimodal_baselines``; None for that row itself)."""
        baseline = baselines.get(row.backbone)
        ranked = row.mean(self.task.rank)
        if baseline is None or baseline is row or ranked is None:
            return None
        return ranked - baseline.mean(self.task.rank)

    def varied_keys(self) -> list[str]:
        return [key for key in CEN_PARAMETERS if any(key in row.varied for row in self.rows)]


# --- collecting ------------------------------------------------------------------------------------------------------


PROTOCOLS = ("auto", "single", "multi")


def collect(uri: str, experiment: str, split: str | None = None,
            pairs: Sequence[tuple[str, str]] | None = None, protocol: str = "auto", mixed: bool = False) -> Report:
    """The experiment's report; ``pairs``: the row labels to show paired differences of (default: CEN's
    exchange ablation where the grid has it, ``report_paired.default_pairs``); ``protocol``: the single-scale scores
    (``<split>/...``), the multi-scale ones (``<split>_ms/...``, see ``model.eval_scales``), or ``auto``: multi-scale
    when every run has them; ``mixed``: list runs trained on different versions of the dataset (different
    ``fusionlab.manifest_sha256``) in one table, each row's marked, where without it they are refused, as
    ``promote`` refuses to rank them."""
    if protocol not in PROTOCOLS:
        raise ReportError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    client = store.client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ReportError(f"no experiment {experiment!r} in {uri}; it has {names}")
    runs = search_all_runs(client, found.experiment_id, f"tags.`{KIND_TAG}` = 'train'")
    listed = [run for run in runs
              if run.info.status == "FINISHED" or run.data.tags.get(STOPPED_EARLY_TAG) == "true"]
    if not listed:
        raise ReportError(f"experiment {experiment!r} has no finished training runs ({len(runs)} in all)")
    tasks = sorted({run.data.tags.get(TASK_TAG, "segmentation") for run in listed})
    if len(tasks) > 1:
        raise ReportError(f"experiment {experiment!r} mixes tasks {tasks}: one table holds one task's runs; "
                          f"report each task's runs from an experiment of their own")
    if tasks[0] not in TASKS:
        raise ReportError(f"experiment {experiment!r} has {tasks[0]!r} runs; a report knows the tasks {sorted(TASKS)}")
    task = TASKS[tasks[0]]
    manifests = check_manifests(listed, experiment, mixed)
    if split is None:
        split = "test" if all(f"test/{task.rank}" in run.data.metrics for run in listed) else "val"
    key, label = _protocol_scores(listed, split, task, protocol, experiment)
    scored = [_scores(run, key, client, task) for run in listed]
    rows = _rows(scored, task)
    features = tuple(sorted({run.tags.get(FID_FEATURES_TAG, "?") for run in scored})) if task is TRANSLATION else ()
    listed_ids = {run.info.run_id for run in listed}
    unfinished = tuple(_unfinished(run) for run in sorted(runs, key=lambda r: r.info.run_name or "")
                       if run.info.run_id not in listed_ids)
    try:
        paired = paired_differences(rows, pairs)
    except ValueError as error:
        raise ReportError(str(error)) from None
    return Report(experiment, split, rows, sum(run.stopped_early for run in scored), tasks[0], features, unfinished,
                  paired, label, manifests)


def check_manifests(listed: list[Run], experiment: str, mixed: bool) -> tuple[str, ...]:
    """The manifests (sha256) the runs were trained on; more than one is refused unless ``mixed``: scores on two
    versions of a dataset are not comparable (``promote`` refuses the same runs)."""
    versions: dict[str, list[str]] = {}
    for run in listed:
        versions.setdefault(run.data.tags.get(MANIFEST_TAG, ""), []).append(run.info.run_name or run.info.run_id)
    if len(versions) > 1 and not mixed:
        listed_versions = "; ".join(f"{short_manifest(digest)}: {len(names)} run(s) ({', '.join(sorted(names)[:3])}"
                                    + (", ..." if len(names) > 3 else "") + ")"
                                    for digest, names in sorted(versions.items()))
        raise ReportError(f"experiment {experiment!r} holds runs trained on {len(versions)} versions of the dataset "
                          f"(manifest sha256 {listed_versions}): their scores are not comparable, and one table "
                          f"would rank them together (promote refuses them too). Report each version's runs from "
                          f"an experiment of their own, or pass --mixed to list them all with each row's manifest "
                          f"marked")
    return tuple(sorted(versions))


def short_manifest(digest: str) -> str:
    """A manifest sha256 as a report shows it (12 digits, as ``promote`` does), "none" where a run has none."""
    return digest[:12] or "none"


def _protocol_scores(listed: list[Run], split: str, task: TaskMetrics, protocol: str, experiment: str
                     ) -> tuple[str, str]:
    """The metric prefix the report reads (``test`` or ``test_ms``) and the label of how those were scored."""
    multi_key = f"{split}{MULTI_SCALE_SUFFIX}"
    without = [run.info.run_name for run in listed if f"{multi_key}/{task.rank}" not in run.data.metrics]
    if protocol == "single" or (protocol == "auto" and without):
        return split, SINGLE_SCALE_LABEL
    if without:
        raise ReportError(f"experiment {experiment!r}: runs {without[:5]} have no multi-scale {split} scores "
                          f"({multi_key}/{task.rank}); they ran without model.eval_scales / model.eval_flip. Report "
                          f"them single-scale (--protocol single), or run them again with those set")
    labels = sorted({run.data.tags.get(EVAL_PROTOCOL_TAG, NOT_RECORDED) for run in listed})
    return multi_key, " / ".join(labels)


def _unfinished(run: Run) -> str:
    cell = run.data.tags.get(CELL_TAG)
    error = run.data.tags.get(ERROR_TAG)
    return (f"{run.info.run_name}" + (f" ({cell})" if cell else "") + f": {run.info.status}"
            + (f": {error.splitlines()[0][:200]}" if error else ""))


def search_all_runs(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    """Every run of the experiment that ``filter_string`` matches, page after page (1000 a page)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _scores(run: Run, split: str, client: MlflowClient, task: TaskMetrics) -> RunScores:
    metrics = run.data.metrics
    tags = run.data.tags
    epochs = None
    if tags.get(STOPPED_EARLY_TAG) == "true":
        epochs = len({m.step for m in client.get_metric_history(run.info.run_id, "train/loss")})
    return RunScores(
        run_id=run.info.run_id, run_name=run.info.run_name, label=tags.get(CELL_TAG, run.info.run_name),
        model=run.data.params.get("model.name", tags.get(MODEL_TAG, "?")),
        params=with_current_keys(run.data.params),  # runs logged before model.params too
        tags=dict(tags), scores={m: metrics[f"{split}/{m}"] for m in task.metrics if f"{split}/{m}" in metrics},
        start_time=run.info.start_time, epochs=epochs)


def _method(run: RunScores) -> str:
    modality = run.params.get("model.params.modality")
    return f"{run.model} ({modality})" if run.model == "unimodal" and modality not in (None, "None") else run.model


def _rows(scored: list[RunScores], task: TaskMetrics) -> list[Row]:
    groups: dict[str, list[RunScores]] = {}
    for run in sorted(scored, key=lambda r: r.start_time):
        groups.setdefault(run.label, []).append(run)
    rows = []
    for label, runs in groups.items():
        first = runs[0]
        paper = json.loads(first.tags[PAPER_TAG]) if PAPER_TAG in first.tags else None
        parameters = first.tags.get(PARAMETERS_TAG)
        flops = first.tags.get(FLOPS_TAG)
        shown = f"{label} (stopped at epoch {first.epochs})" if first.stopped_early else label
        rows.append(Row(label=shown, method=_method(first), modalities=first.tags.get(MODALITIES_TAG, "-"),
                        backbone=first.params.get("model.backbone", "-"), runs=runs, paper=paper,
                        parameters=int(parameters) if parameters else None, task=task,
                        flops=int(flops) if flops else None))
    cen_rows = [row for row in rows if row.runs[0].model == "cen"]
    for key in CEN_PARAMETERS:
        values = {row.runs[0].params.get(key) for row in cen_rows}
        if len(values) > 1:
            for row in cen_rows:
                row.varied[key] = row.runs[0].params.get(key, "-")
    in_grid = all(CELL_TAG in run.tags for run in scored)
    if not in_grid:  # sweep trials and loose runs: best first
        rows.sort(key=lambda row: task.order(row.mean(task.rank)))
    return rows
