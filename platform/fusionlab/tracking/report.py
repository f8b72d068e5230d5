"""``fusionlab report``: an experiment's runs as the papers' table, with the published figures beside them, and plots.

Rows are the experiment's finished training runs (tag ``fusionlab.kind=train``), one per grid cell (seeds averaged,
shown as mean ± std) or, outside a grid, one per run; a sweep's trials that the scheduler stopped early are rows
too, with the epochs they ran (a sweep's report is about its search). Scores are the ensemble's on one split — the
test split when every listed run has it, else val (what a search selects on) — as the papers print them: what a
task shows is its ``TaskMetrics`` (segmentation: pixel acc., mean acc., mIoU in percent, higher is better;
translation: FID, KID×100, L1, lower is better). Where a grid cell has published figures (tag
``fusionlab.paper``), the figure and our difference sit beside ours (for translation only when the FIDs come from
the FID Inception network, tag ``fusionlab.fid_features``); where the table has unimodal rows, every row also shows
its ranking metric against the best of them. An experiment holds one task's runs, trained on one version of its
dataset (one ``fusionlab.manifest_sha256``, as ``promote`` requires; ``mixed`` lists several, each row's marked).
Files: ``report.md``, ``report.csv`` and ``plots/*.png``, written to a staging directory (``fusionlab.staging``) and
then moved into place, and logged under ``report/`` to the experiment's sweep or grid parent run(s). A marker file
(``.fusionlab-report``) tells an earlier report, which is replaced, from a directory of someone else's, which is not
(unless ``overwrite``).

This module writes those files and is where callers import the report from; reading the runs into rows is
``report_rows.py``'s job (the rows themselves are ``report_scores.py``'s), the table's text (Markdown, caption, CSV
frame) ``report_table.py``'s.
"""

from __future__ import annotations

from pathlib import Path

from fusionlab.staging import Staging, existing_entries

from . import plots, store
from .filters import tag_equals
from .report_rows import CEN_PARAMETERS, Report, ReportError, collect, search_all_runs
from .report_scores import SEGMENTATION, TASKS, TRANSLATION, Row, TaskMetrics
from .report_table import caption, comparability_note, frame, markdown, table_columns, table_rows
from .runs import load_model
from .tags import KIND_TAG

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
                 log_to_parent: bool = True, overwrite: bool = False,
                 pairs: list[tuple[str, str]] | None = None, protocol: str = "auto", mixed: bool = False
                 ) -> tuple[Report, Path, list[str]]:
    """Collect, write ``out`` (an earlier report there is replaced as a whole; anything else only with
    ``overwrite``, see ``check_out``) and log it to the parent run(s).

    ``pairs``: row labels whose paired difference over shared seeds the caption gives (``report_paired.py``);
    ``protocol``: single- or multi-scale scores (``report_rows.collect``); ``mixed``: runs on different versions of
    the dataset in one table, each row's marked (refused without it, ``report_rows.check_manifests``).
    Returns the report, where it was written and the ids of the parent runs it was logged to."""
    out = Path(out).resolve()
    check_out(out, overwrite)
    report = collect(uri, experiment, split, pairs, protocol, mixed)
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
    client = store.client(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    parents = [run for kind in ("sweep", "grid")
               for run in search_all_runs(client, experiment_id, tag_equals(KIND_TAG, kind))]
    for parent in parents:
        client.log_artifacts(parent.info.run_id, str(folder), artifact_path="report")
    return [parent.info.run_id for parent in parents]


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


__all__ = ["REPORT_MARKER", "SEGMENTATION", "TASKS", "TRANSLATION", "Report", "ReportError", "Row", "TaskMetrics",
           "caption", "check_out", "collect", "comparability_note", "frame", "markdown", "table_columns", "table_rows",
           "write_report"]
