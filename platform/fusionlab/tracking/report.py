"""``fusionlab report``: an experiment's runs as the papers' table, with the published figures beside them, and plots.

Rows are the experiment's finished training runs (tag ``fusionlab.kind=train``), one per grid cell (seeds averaged,
shown as mean ± std) or, outside a grid, one per run; a sweep's trials that the scheduler stopped early are rows
too, with the epochs they ran (a sweep's report is about its search). Scores are the ensemble's on one split — the
test split when every listed run has it, else val (what a search selects on) — as the papers print them: what a
task shows is its ``TaskMetrics`` (segmentation: pixel acc., mean acc., mIoU in percent, higher is better;
translation: FID, KID×100, L1, lower is better). Where a grid cell has published figures (tag
``fusionlab.paper``), the figure and our difference sit beside ours (for translation only when the FIDs come from
the FID Inception network, tag ``fusionlab.fid_features``); where the table has unimodal rows, every row also shows
its ranking metric against the best of them. An experiment holds one task's runs. Files: ``report.md``,
``report.csv`` and ``plots/*.png``, written to a staging directory (``fusionlab.staging``) and then moved into place,
and logged under ``report/`` to the experiment's sweep or grid parent run(s). A marker file (``.fusionlab-report``)
tells an earlier report, which is replaced, from a directory of someone else's, which is not (unless ``overwrite``).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from fusionlab.errors import FusionlabError
from fusionlab.fid.inception import INCEPTION_NAME
from fusionlab.fid.local import LOCAL_NAME
from fusionlab.models.params import CENParams
from fusionlab.staging import Staging, existing_entries

from . import plots
from .runs import KIND_TAG, RECIPE_TAG, SELECTION_TAG, load_model

TASK_TAG, FID_FEATURES_TAG = "fusionlab.task", "fusionlab.fid_features"
# The CEN parameters a report varies and plots, keyed by their config keys (CENParams' fields).
CEN_SYMBOLS = {"lambda": "λ", "threshold": "θ", "portion": "portion"}
CEN_PARAMETERS = {f"model.params.{key}": CEN_SYMBOLS[key] for key in CENParams.config_keys() if key in CEN_SYMBOLS}
# Runs logged before model.params: their keys, read as today's.
LEGACY_PARAMS = {**{f"model.cen.{key}": f"model.params.{key}"
                    for key in [*CENParams.config_keys(), "effective_lambda"]},
                 "model.modality": "model.params.modality"}
SELECTION_WORDS = {
    "best_test": "the best epoch on the test split (the references' protocol: selected on test, so the test figure "
                 "is optimistic)",
    "best_val": "the best epoch on the val split, test scored once with it",
    "last": "the last epoch",
}
NOT_RECORDED = "not recorded"  # runs from before recipes and selection were tracked


class ReportError(FusionlabError):
    """Nothing to report: the message names the experiment and what is missing."""


@dataclass(frozen=True)
class TaskMetrics:
    """What a task's table shows: the ensemble's metrics (logged as ``<split>/<metric>``), their headers, how a
    logged value becomes the shown one (``scale``), and the metric that ranks rows."""

    metrics: tuple[str, ...]
    headers: dict[str, str]
    short_headers: dict[str, str]  # for a terminal
    unit: str  # after a metric's header in the Markdown: " (%)"
    scale: float  # shown = logged × scale
    rank: str  # ranks sweep rows and picks the best unimodal row
    lower_is_better: bool
    paper: tuple[str, ...]  # the metrics a published figure (tag ``fusionlab.paper``) may give
    scores: str  # the caption's words for the scores, ``{split}`` filled in
    decimals: dict[str, int] = field(default_factory=dict)  # shown digits, 1 unless given

    def best(self, values: list[tuple[float, Any]]) -> Any:
        """The item of the best ``(score, item)`` pair."""
        return (min if self.lower_is_better else max)(values, key=lambda pair: pair[0])[1]

    def order(self, value: float | None) -> tuple[bool, float]:
        """Sort key: best first, missing last."""
        return (value is None, 0.0 if value is None else value if self.lower_is_better else -value)


SEGMENTATION = TaskMetrics(
    metrics=("pixel_acc", "mean_acc", "miou"),
    headers={"pixel_acc": "Pixel Acc.", "mean_acc": "Mean Acc.", "miou": "mIoU"},
    short_headers={"pixel_acc": "pix acc", "mean_acc": "mean acc", "miou": "mIoU"},
    unit=" (%)", scale=100.0, rank="miou", lower_is_better=False, paper=("pixel_acc", "mean_acc", "miou"),
    scores="ensemble scores on the {split} split (single-scale), percent")
TRANSLATION = TaskMetrics(
    metrics=("fid", "kid", "l1"),  # kid is logged ×100, as the papers print it
    headers={"fid": "FID", "kid": "KID×100", "l1": "L1"},
    short_headers={"fid": "FID", "kid": "KID×100", "l1": "L1"},
    unit="", scale=1.0, rank="fid", lower_is_better=True, paper=("fid", "kid"),
    scores="the ensemble's FID, KID×100 and L1 on the {split} split (lower is better for all three)",
    decimals={"fid": 2, "kid": 2, "l1": 3})  # local-extractor FIDs are small: 2 digits
TASKS = {"segmentation": SEGMENTATION, "translation": TRANSLATION}


@dataclass(frozen=True)
class RunScores:
    run_id: str
    run_name: str
    label: str  # the grid cell's label, else the run name
    model: str
    params: dict[str, str]
    tags: dict[str, str]
    scores: dict[str, float]  # as logged (segmentation: fractions), on the report's split
    start_time: int
    epochs: int | None = None  # epochs it trained, for trials stopped early

    @property
    def stopped_early(self) -> bool:
        return self.tags.get("fusionlab.stopped_early") == "true"


@dataclass
class Row:
    label: str
    method: str
    modalities: str
    backbone: str
    runs: list[RunScores]
    paper: dict[str, Any] | None
    parameters: int | None
    varied: dict[str, str] = field(default_factory=dict)  # searched parameters that differ between rows
    task: TaskMetrics = SEGMENTATION

    def mean(self, metric: str) -> float | None:
        """As shown (segmentation: percent)."""
        values = [run.scores[metric] for run in self.runs if metric in run.scores]
        return self.task.scale * statistics.fmean(values) if values else None

    def std(self, metric: str) -> float | None:
        values = [self.task.scale * run.scores[metric] for run in self.runs if metric in run.scores]
        return statistics.stdev(values) if len(values) > 1 else None

    @property
    def unimodal(self) -> bool:
        return self.runs[0].model == "unimodal"

    @property
    def recipe(self) -> str:
        return self.runs[0].tags.get(RECIPE_TAG, NOT_RECORDED)

    @property
    def selection(self) -> str:
        return self.runs[0].tags.get(SELECTION_TAG, NOT_RECORDED)


@dataclass
class Report:
    experiment: str
    split: str
    rows: list[Row]
    stopped_early: int  # sweep trials stopped by the scheduler (rows marked with the epochs they ran)
    task_name: str = "segmentation"
    fid_features: tuple[str, ...] = ()  # translation: the runs' feature extractors ("?" where a run has no tag)
    unfinished: tuple[str, ...] = ()  # runs not in the table: "<run> (<cell>): <STATUS>[: <error>]"

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

    def best_unimodal(self) -> Row | None:
        rank = self.task.rank
        unimodal = [(row.mean(rank), row) for row in self.rows if row.unimodal and row.mean(rank) is not None]
        return self.task.best(unimodal) if unimodal else None

    def varied_keys(self) -> list[str]:
        return [key for key in CEN_PARAMETERS if any(key in row.varied for row in self.rows)]


# --- collecting ------------------------------------------------------------------------------------------------------


def collect(uri: str, experiment: str, split: str | None = None) -> Report:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ReportError(f"no experiment {experiment!r} in {uri}; it has {names}")
    runs = _search(client, found.experiment_id, f"tags.`{KIND_TAG}` = 'train'")
    listed = [run for run in runs
              if run.info.status == "FINISHED" or run.data.tags.get("fusionlab.stopped_early") == "true"]
    if not listed:
        raise ReportError(f"experiment {experiment!r} has no finished training runs ({len(runs)} in all)")
    tasks = sorted({run.data.tags.get(TASK_TAG, "segmentation") for run in listed})
    if len(tasks) > 1:
        raise ReportError(f"experiment {experiment!r} mixes tasks {tasks}: one table holds one task's runs; "
                          f"report each task's runs from an experiment of their own")
    if tasks[0] not in TASKS:
        raise ReportError(f"experiment {experiment!r} has {tasks[0]!r} runs; a report knows the tasks {sorted(TASKS)}")
    task = TASKS[tasks[0]]
    if split is None:
        split = "test" if all(f"test/{task.rank}" in run.data.metrics for run in listed) else "val"
    scored = [_scores(run, split, client, task) for run in listed]
    rows = _rows(scored, task)
    features = tuple(sorted({run.tags.get(FID_FEATURES_TAG, "?") for run in scored})) if task is TRANSLATION else ()
    listed_ids = {run.info.run_id for run in listed}
    unfinished = tuple(_unfinished(run) for run in sorted(runs, key=lambda r: r.info.run_name or "")
                       if run.info.run_id not in listed_ids)
    return Report(experiment, split, rows, sum(run.stopped_early for run in scored), tasks[0], features, unfinished)


def _unfinished(run: Run) -> str:
    from .lifecycle import ERROR_TAG

    cell = run.data.tags.get("fusionlab.cell")
    error = run.data.tags.get(ERROR_TAG)
    return (f"{run.info.run_name}" + (f" ({cell})" if cell else "") + f": {run.info.status}"
            + (f": {error.splitlines()[0][:200]}" if error else ""))


def _search(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
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
    if tags.get("fusionlab.stopped_early") == "true":
        epochs = len({m.step for m in client.get_metric_history(run.info.run_id, "train/loss")})
    return RunScores(
        run_id=run.info.run_id, run_name=run.info.run_name, label=tags.get("fusionlab.cell", run.info.run_name),
        model=run.data.params.get("model.name", tags.get("fusionlab.model", "?")),
        params=_current_keys(run.data.params),
        tags=dict(tags), scores={m: metrics[f"{split}/{m}"] for m in task.metrics if f"{split}/{m}" in metrics},
        start_time=run.info.start_time, epochs=epochs)


def _current_keys(params: dict[str, str]) -> dict[str, str]:
    """A run's params with the keys of runs logged before ``model.params`` renamed to today's."""
    renamed = {LEGACY_PARAMS[key]: value for key, value in params.items() if key in LEGACY_PARAMS}
    return {**renamed, **{key: value for key, value in params.items() if key not in LEGACY_PARAMS}}


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
        paper = json.loads(first.tags["fusionlab.paper"]) if "fusionlab.paper" in first.tags else None
        parameters = first.tags.get("fusionlab.parameters")
        shown = f"{label} (stopped at epoch {first.epochs})" if first.stopped_early else label
        rows.append(Row(label=shown, method=_method(first), modalities=first.tags.get("fusionlab.modalities", "-"),
                        backbone=first.params.get("model.backbone", "-"), runs=runs, paper=paper,
                        parameters=int(parameters) if parameters else None, task=task))
    cen_rows = [row for row in rows if row.runs[0].model == "cen"]
    for key in CEN_PARAMETERS:
        values = {row.runs[0].params.get(key) for row in cen_rows}
        if len(values) > 1:
            for row in cen_rows:
                row.varied[key] = row.runs[0].params.get(key, "-")
    in_grid = all("fusionlab.cell" in run.tags for run in scored)
    if not in_grid:  # sweep trials and loose runs: best first
        rows.sort(key=lambda row: task.order(row.mean(task.rank)))
    return rows


# --- formatting ------------------------------------------------------------------------------------------------------


def _fmt(value: float | None, std: float | None = None, compact: bool = False, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if std is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f}±{std:.{digits}f}" if compact else f"{value:.{digits}f} ± {std:.{digits}f}"


def _signed(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def _short_number(value: str) -> str:
    try:
        return f"{float(value):.3g}"
    except ValueError:
        return value


def table_columns(report: Report, compact: bool = False) -> list[str]:
    """Column headers; ``compact``: short ones for a terminal (the paper and Δ columns follow their metric)."""
    task = report.task
    columns = ["Method", "Modalities", "Backbone", *[CEN_PARAMETERS[key] for key in report.varied_keys()]]
    for metric in task.metrics:
        columns.append(task.short_headers[metric] if compact else f"{task.headers[metric]}{task.unit}")
        if report.has_paper and metric in task.paper:
            columns += ["paper", "Δ"] if compact else [f"paper {task.headers[metric]}", f"Δ {task.headers[metric]}"]
    if report.best_unimodal() is not None:
        columns.append("vs best uni" if compact else f"{task.headers[task.rank]} vs best unimodal")
    columns.append("params (M)" if compact else "#Params (M)")
    if any(len(row.runs) > 1 for row in report.rows):
        columns.append("seeds")
    return columns


def table_rows(report: Report, compact: bool = False) -> list[list[str]]:
    task = report.task
    best_single = report.best_unimodal()
    seeds = any(len(row.runs) > 1 for row in report.rows)
    out = []
    for row in report.rows:
        cells = [row.label, row.modalities.replace(",", "+"), row.backbone,
                 *[_short_number(row.varied.get(key, "-")) for key in report.varied_keys()]]
        for metric in task.metrics:
            digits = task.decimals.get(metric, 1)
            ours = row.mean(metric)
            cells.append(_fmt(ours, row.std(metric), compact, digits))
            if report.has_paper and metric in task.paper:
                published = (row.paper or {}).get(metric)
                cells.append(_fmt(published, digits=digits))
                cells.append(_signed(ours - published, digits) if ours is not None and published is not None
                             else "-")
        if best_single is not None:
            ranked = row.mean(task.rank)
            cells.append("-" if row is best_single or ranked is None
                         else _signed(ranked - best_single.mean(task.rank), task.decimals.get(task.rank, 1)))
        cells.append(f"{row.parameters / 1e6:.2f}" if row.parameters else "-")
        if seeds:
            cells.append(str(len(row.runs)))
        out.append(cells)
    return out


def comparability_note(report: Report) -> str | None:
    """For translation FIDs not from the FID Inception network: why they cannot sit beside published figures."""
    if report.comparable:
        return None
    named = [name for name in report.fid_features if name != "?"]
    parts = [("the local stand-in feature extractor" if name == LOCAL_NAME else "the feature extractor") + f" `{name}`"
             for name in named]
    if "?" in report.fid_features:
        parts.append(f"an extractor not recorded (runs without the {FID_FEATURES_TAG} tag)")
    return (f"Not comparable to published figures: these FID/KID values were computed with {' and '.join(parts)}, "
            f"not the FID Inception network (`{INCEPTION_NAME}`), so they compare only with each other (same "
            f"extractor, same data); the ours − paper columns are omitted.")


def caption(report: Report) -> str:
    task = report.task
    lines = [f"{report.experiment}: {task.scores.format(split=report.split)}; "
             f"mean ± std over seeds where a cell has several."]
    best_single = report.best_unimodal()
    if best_single is not None:
        header = task.headers[task.rank]
        digits = task.decimals.get(task.rank, 1)
        line = (f"'{header} vs best unimodal': difference to {best_single.label} "
                f"({best_single.mean(task.rank):.{digits}f}), in points.")
        if task.lower_is_better:
            line += f" {header}: lower is better, so a negative Δ is an improvement over the best unimodal row."
        lines.append(line)
    if report.has_paper:
        sources = sorted({row.paper["source"] for row in report.rows if row.paper})
        lines.append("paper: published figures; Δ = ours − paper. Sources: " + "; ".join(sources))
    note = comparability_note(report)
    if note is not None:
        lines.append(note)
    lines += protocol_lines(report)
    if report.stopped_early:
        lines.append(f"{report.stopped_early} trial(s) were stopped early by the scheduler: their scores are from "
                     f"the epoch they stopped at.")
    if report.unfinished:
        lines.append(f"Not in the table, {len(report.unfinished)} run(s) that did not finish: "
                     + "; ".join(report.unfinished) + ".")
    return "\n".join(lines)


def protocol_lines(report: Report) -> list[str]:
    """Which recipe trained the rows and which epoch's model they score, one line each (rows named if mixed)."""
    lines = []
    for what, attribute, words in (("Recipe", "recipe", {}), ("Selected", "selection", SELECTION_WORDS)):
        groups: dict[str, list[str]] = {}
        for row in report.rows:
            groups.setdefault(getattr(row, attribute), []).append(row.label)
        if len(groups) == 1:
            value = next(iter(groups))
            lines.append(f"{what}: {words.get(value, value)} (every row).")
        else:
            parts = [f"{words.get(value, value)} ({', '.join(labels)})" for value, labels in groups.items()]
            lines.append(f"{what}: " + "; ".join(parts) + ".")
    return lines


def markdown(report: Report) -> str:
    columns = table_columns(report)
    note = comparability_note(report)
    lines = [f"# {report.experiment}", "", *([f"> **{note}**", ""] if note else []), "| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if i < 3 else "---:" for i in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(report)]
    return "\n".join(lines) + "\n\n" + caption(report).replace("\n", "  \n") + "\n"


def frame(report: Report) -> pd.DataFrame:
    """One line per row with unrounded numbers, as shown (segmentation: fractions as percent), for the CSV."""
    task = report.task
    records = []
    best_single = report.best_unimodal()
    for row in report.rows:
        record: dict[str, Any] = {"method": row.label, "model": row.method, "modalities": row.modalities,
                                  "backbone": row.backbone, "split": report.split, "seeds": len(row.runs),
                                  "parameters": row.parameters, "recipe": row.recipe, "selection": row.selection,
                                  "run_ids": " ".join(r.run_id for r in row.runs)}
        for key in report.varied_keys():
            record[key] = row.varied.get(key)
        for metric in task.metrics:
            ours = row.mean(metric)
            record[metric] = ours
            record[f"{metric}_std"] = row.std(metric)
            if metric in task.paper:
                published = (row.paper or {}).get(metric)
                record[f"paper_{metric}"] = published
                record[f"diff_{metric}"] = (ours - published if report.comparable and ours is not None
                                            and published is not None else None)  # none beside incomparable FIDs
        if best_single is not None:
            ranked = row.mean(task.rank)
            record[f"{task.rank}_vs_best_unimodal"] = None if ranked is None else ranked - best_single.mean(task.rank)
        record["paper_source"] = (row.paper or {}).get("source")
        if task is TRANSLATION:
            record["fid_features"] = " ".join(sorted({run.tags.get(FID_FEATURES_TAG, "?") for run in row.runs}))
        records.append(record)
    return pd.DataFrame(records)


# --- plots -----------------------------------------------------------------------------------------------------------


def _plots(report: Report, uri: str, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    task, rank = report.task, report.task.rank
    label = f"{report.split} {task.headers[rank]}{task.unit}" + (" (lower is better)" if task.lower_is_better else "")
    published = [(row.paper or {}).get(rank) if report.comparable else None for row in report.rows]
    made = [plots.method_bars([row.label for row in report.rows], [row.mean(rank) for row in report.rows],
                              published, label, folder / f"{rank}_by_method.png")]
    runs = [run for row in report.rows for run in row.runs if run.model == "cen" and rank in run.scores]
    for key, symbol in CEN_PARAMETERS.items():
        values = [run.params.get(key) for run in runs]
        if len({v for v in values if v not in (None, "None")}) < 2:
            continue
        pairs = [(float(v), task.scale * run.scores[rank]) for v, run in zip(values, runs, strict=True)
                 if v not in (None, "None")]
        made.append(plots.parameter_scatter([p[0] for p in pairs], [p[1] for p in pairs], f"{symbol} ({key})",
                                            label, key != "model.params.portion",
                                            folder / f"{rank}_vs_{key.rsplit('.', 1)[-1]}.png"))
    if runs:  # what sparsity did inside the best CEN model
        best = task.best([(run.scores[rank], run) for run in runs])
        model = load_model(f"runs:/{best.run_id}/model", uri).model
        for figure in (plots.gamma_histograms(model, folder / "gamma_histograms.png"),
                       plots.exchange_by_layer(model, folder / "exchange_by_layer.png")):
            if figure is not None:
                made.append(figure)
    return made


# --- writing ---------------------------------------------------------------------------------------------------------


REPORT_MARKER = ".fusionlab-report"
REPORT_FILES = ("report.md", "report.csv", "plots", REPORT_MARKER)


def check_out(out: Path, overwrite: bool = False) -> None:
    """Refuse an ``out`` that ``write_report`` may not replace: a file or link always; unless ``overwrite``, a
    non-empty directory that is not an earlier report (no marker) or that holds files a report does not write."""
    entries = existing_entries(out, ReportError)
    if not entries or overwrite:
        return
    if REPORT_MARKER not in entries:
        raise ReportError(f"{out} is not empty and is not a fusionlab report (no {REPORT_MARKER} marker); not "
                          f"replacing it: choose another --out, or pass --overwrite to replace it")
    foreign = [name for name in entries if name not in REPORT_FILES]
    if foreign:
        raise ReportError(f"{out} is an earlier report that also holds other files ({', '.join(foreign[:5])}); not "
                          f"replacing it: choose another --out, or pass --overwrite to replace it")


def write_report(uri: str, experiment: str, out: str | Path, split: str | None = None,
                 log_to_parent: bool = True, overwrite: bool = False) -> tuple[Report, Path, list[str]]:
    """Collect, write ``out`` (an earlier report there is replaced as a whole; anything else only with
    ``overwrite``, see ``check_out``) and log it to the parent run(s).

    Returns the report, where it was written and the ids of the parent runs it was logged to."""
    out = Path(out).resolve()
    check_out(out, overwrite)
    report = collect(uri, experiment, split)
    parents: list[str] = []
    staging = Staging(out)
    with staging as folder:
        (folder / "report.md").write_text(markdown(report))
        frame(report).to_csv(folder / "report.csv", index=False)
        _plots(report, uri, folder / "plots")
        if log_to_parent:
            parents = _log_to_parents(uri, experiment, folder)
        (folder / REPORT_MARKER).write_text(f"written by fusionlab report for experiment {experiment!r}\n")
        check_out(out, overwrite)  # it may have appeared while writing
        staging.commit()
    return report, out, parents


def _log_to_parents(uri: str, experiment: str, folder: Path) -> list[str]:
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    parents = [run for kind in ("sweep", "grid")
               for run in _search(client, experiment_id, f"tags.`{KIND_TAG}` = '{kind}'")]
    for parent in parents:
        client.log_artifacts(parent.info.run_id, str(folder), artifact_path="report")
    return [parent.info.run_id for parent in parents]


__all__ = ["SEGMENTATION", "TASKS", "TRANSLATION", "Report", "ReportError", "Row", "TaskMetrics", "caption",
           "collect", "comparability_note", "frame", "markdown", "table_columns", "table_rows", "write_report"]
