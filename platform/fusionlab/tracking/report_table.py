"""``fusionlab report``'s table as text: its columns and cells (the Markdown's, or compact ones for a terminal), the
caption under it, the Markdown file, and the CSV's frame with unrounded numbers (see ``tracking/report.py``)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from fusionlab.fid.inception import INCEPTION_NAME
from fusionlab.fid.local import LOCAL_NAME
from fusionlab.models.multiscale import SINGLE_SCALE_LABEL

from .report_rows import CEN_PARAMETERS, Report, short_manifest
from .report_scores import TRANSLATION, Row
from .tags import FID_FEATURES_TAG

# The caption's words for each train.selection (the tag fusionlab.selection).
SELECTION_WORDS = {
    "best_test": "the best epoch on the test split (the references' protocol: selected on test, so the test figure "
                 "is optimistic)",
    "best_val": "the best epoch on the val split, test scored once with it",
    "last": "the last epoch",
}


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
    if report.unimodal_baselines():
        columns.append("vs best uni" if compact else f"{task.headers[task.rank]} vs best unimodal")
    columns.append("params (M)" if compact else "#Params (M)")
    if any(row.flops for row in report.rows):
        columns.append("GFLOPs" if compact else "GFLOPs / sample")
    if any(len(row.runs) > 1 for row in report.rows):
        columns.append("seeds")
    if len(report.manifests) > 1:  # --mixed: which version of the dataset each row was trained on
        columns.append("manifest" if compact else "Manifest sha256")
    return columns


def table_rows(report: Report, compact: bool = False) -> list[list[str]]:
    task = report.task
    baselines = report.unimodal_baselines()
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
        if baselines:
            gap = report.baseline_gap(row, baselines)
            cells.append("-" if gap is None else _signed(gap, task.decimals.get(task.rank, 1)))
        cells.append(f"{row.parameters / 1e6:.2f}" if row.parameters else "-")
        if any(other.flops for other in report.rows):
            cells.append(f"{row.flops / 1e9:.3g}" if row.flops else "-")
        if seeds:
            cells.append(str(len(row.runs)))
        if len(report.manifests) > 1:
            cells.append("+".join(short_manifest(digest) for digest in row.manifests))
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
    lines = [f"{report.experiment}: {task.scores.format(split=report.split, protocol=report.protocol)}"
             f"; mean ± std over seeds where a cell has several."]
    baselines = report.unimodal_baselines()
    if baselines:
        header = task.headers[task.rank]
        digits = task.decimals.get(task.rank, 1)
        named = {backbone: f"{row.label} ({row.mean(task.rank):.{digits}f})" for backbone, row in baselines.items()}
        if len(named) == 1:
            line = f"'{header} vs best unimodal': difference to {next(iter(named.values()))}, in points."
        else:
            line = (f"'{header} vs best unimodal': difference to the best unimodal row on the same backbone ("
                    + "; ".join(f"{backbone}: {label}" for backbone, label in named.items()) + "), in points.")
        if task.lower_is_better:
            line += f" {header}: lower is better, so a negative Δ is an improvement over the best unimodal row."
        lines.append(line)
    if report.has_paper:
        sources = sorted({row.paper["source"] for row in report.rows if row.paper})
        lines.append("paper: published figures; Δ = ours − paper. Sources: " + "; ".join(sources))
        lines += paper_protocol_lines(report)
    note = comparability_note(report)
    if note is not None:
        lines.append(note)
    mixed = manifest_lines(report)  # runs on several versions of the dataset: no champion across them
    lines += mixed + (champion_lines(report) if not mixed else []) + paired_lines(report)
    lines += protocol_lines(report)
    if report.stopped_early:
        lines.append(f"{report.stopped_early} trial(s) were stopped early by the scheduler: their scores are from "
                     f"the epoch they stopped at.")
    if report.unfinished:
        lines.append(f"Not in the table, {len(report.unfinished)} run(s) that did not finish: "
                     + "; ".join(report.unfinished) + ".")
    return "\n".join(lines)


def manifest_lines(report: Report) -> list[str]:
    """With ``--mixed`` and runs on several versions of the dataset: which rows used which, and that their scores
    do not compare."""
    if len(report.manifests) < 2:
        return []
    groups = {digest: [row.label for row in report.rows if digest in row.manifests] for digest in report.manifests}
    parts = [f"{short_manifest(digest)} ({', '.join(labels)})" for digest, labels in groups.items()]
    return [f"Mixed datasets (--mixed): the rows were trained on {len(report.manifests)} versions of the dataset "
            f"(the manifest column, sha256): {'; '.join(parts)}. Scores on different versions are not comparable: "
            f"rank rows only within one version."]


def _budget(row: Row, other: Row) -> str:
    """``row``'s parameters and FLOPs as multiples of ``other``'s, where both are known."""
    parts = []
    for what, ours, theirs in (("the parameters", row.parameters, other.parameters),
                               ("the FLOPs per sample", row.flops, other.flops)):
        if ours and theirs:
            parts.append(f"{ours / theirs:.2g}× {what}")
    return " and ".join(parts)


def champion_lines(report: Report) -> list[str]:
    """Why the best row is the best, as far as budgets say: its parameters and FLOPs against the runner-up's."""
    task = report.task
    ranked = sorted((row for row in report.rows if row.mean(task.rank) is not None),
                    key=lambda row: task.order(row.mean(task.rank)))
    if len(ranked) < 2:
        return []
    best, second = ranked[0], ranked[1]
    digits = task.decimals.get(task.rank, 1)
    header = task.headers[task.rank]
    budget = _budget(best, second)
    line = (f"Best {header}: {best.label} ({best.mean(task.rank):.{digits}f}), ahead of {second.label} "
            f"({second.mean(task.rank):.{digits}f})")
    return [line + (f" with {budget} of it." if budget else ".")]


def paired_lines(report: Report) -> list[str]:
    task = report.task
    lines = []
    points = " points" if task.unit else ""  # percent figures differ by points
    for pair in report.paired:
        digits = task.decimals.get(pair.metric, 1)
        verdict = "excludes 0" if pair.excludes_zero() else "includes 0: not separable from seed noise"
        lines.append(f"Paired over seeds {', '.join(pair.seeds)}: {pair.first} − {pair.second} = "
                     f"{pair.mean:+.{digits}f} {task.headers[pair.metric]}{points} "
                     f"({pair.confidence:.0%} CI {pair.low:+.{digits}f} to {pair.high:+.{digits}f}, Student t over "
                     f"{len(pair.seeds)} seeds; the interval {verdict}).")
    return lines


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


def paper_protocol_lines(report: Report) -> list[str]:
    """Segmentation: how each published figure was scored (a cell's ``paper.protocol``) where that is not how ours
    were, or where its source does not say."""
    if report.task_name != "segmentation":
        return []
    ours = "multi-scale" if report.protocol != SINGLE_SCALE_LABEL else SINGLE_SCALE_LABEL
    differ, unstated = [], []
    for row in report.rows:
        if row.paper:
            published = row.paper.get("protocol")
            if published is None:
                unstated.append(row.label)
            elif published != ours:
                differ.append(f"{row.label} ({published})")
    lines = []
    if differ:
        lines.append(f"Published figures scored otherwise than ours ({ours}), so their Δ is not like for like: "
                     + "; ".join(differ) + ".")
    if unstated:
        lines.append("Published figures whose source does not say whether they are single- or multi-scale: "
                     + ", ".join(unstated) + ".")
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
    baselines = report.unimodal_baselines()
    for row in report.rows:
        record: dict[str, Any] = {"method": row.label, "model": row.method, "modalities": row.modalities,
                                  "backbone": row.backbone, "split": report.split, "seeds": len(row.runs),
                                  "parameters": row.parameters, "flops": row.flops, "recipe": row.recipe,
                                  "selection": row.selection,
                                  "run_ids": " ".join(r.run_id for r in row.runs),
                                  "manifest_sha256": " ".join(digest or "none" for digest in row.manifests)}
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
        if baselines:
            record[f"{task.rank}_vs_best_unimodal"] = report.baseline_gap(row, baselines)
        record["paper_source"] = (row.paper or {}).get("source")
        if task is TRANSLATION:
            record["fid_features"] = " ".join(sorted({run.tags.get(FID_FEATURES_TAG, "?") for run in row.runs}))
        records.append(record)
    return pd.DataFrame(records)
