"""``fusionlab promote`` and ``registry``: the model registry's aliases and their history."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table


def _score(value: str | None) -> str:
    try:
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return value or "-"


def cmd_promote(args: argparse.Namespace, console: Console) -> int:
    from rich.markup import escape

    from fusionlab.tracking import default_tracking_uri
    from fusionlab.tracking.registry import PromotionRefused, RegistryError, promote

    uri = args.tracking_uri or default_tracking_uri(args.workdir)
    try:
        result = promote(uri, args.experiment, metric=args.metric, mode=args.mode, alias=args.alias, name=args.name,
                         force=args.force)
    except PromotionRefused as error:
        console.print(f"[red]refused:[/] {escape(str(error))}", highlight=False)
        return 1
    except RegistryError as error:
        console.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        return 1
    best, previous, target = result.candidate, result.previous, f"{result.name}@{result.alias}"
    if result.skipped:
        console.print(f"[yellow]skipped[/] {len(result.skipped)} better-scoring run(s): "
                      + escape("; ".join(result.skipped)), highlight=False)
    if result.unchanged:
        console.print(f"{escape(target)} is already version {previous.version}, from the best run "
                      f"{escape(best.run_name)} ({best.run_id}, {result.metric} {best.value:.4f}): nothing changed",
                      highlight=False)
        return 0
    before = (f"version {previous.version} (run {previous.run_name or '?'}, {result.metric} "
              f"{_score(None if previous.value is None else str(previous.value))})" if previous else "none")
    console.print(f"promoted {escape(best.run_name)} ({best.run_id}, {result.metric} {best.value:.4f}, best of "
                  f"{result.candidates} candidate(s)) to {escape(result.name)} version {result.version}; "
                  f"@{escape(result.alias)} moved from {escape(before)}", highlight=False)
    if result.overridden:
        console.print("[yellow]forced[/] over: " + escape("; ".join(result.overridden)), highlight=False)
    return 0


def cmd_registry(args: argparse.Namespace, console: Console) -> int:
    from rich.markup import escape

    from fusionlab.tracking import default_tracking_uri
    from fusionlab.tracking.registry import RegistryError
    from fusionlab.tracking.registry_history import promotion_history, registered_models
    from fusionlab.tracking.tags import DATASET_TAG, TASK_TAG

    uri = args.tracking_uri or default_tracking_uri(args.workdir)
    if not args.name:
        models = registered_models(uri)
        if not models:
            console.print("no registered models yet: fusionlab promote --experiment NAME")
            return 0
        table = Table(title="registered models", title_justify="left")
        for column in ("name", "task", "dataset", "latest version", "aliases", "last promotion (UTC)"):
            table.add_column(column)
        for model in models:
            aliases = ", ".join(f"{alias} -> {version}" for alias, version in sorted(model.aliases.items()))
            table.add_row(escape(model.name), escape(model.tags.get(TASK_TAG, "-")),
                          escape(model.tags.get(DATASET_TAG, "-")), model.latest_version or "-",
                          escape(aliases) or "-", model.last_promoted_at or "-")
        console.print(table)
        return 0
    try:
        records = promotion_history(uri, args.name)
    except RegistryError as error:
        console.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        return 1
    table = Table(title=f"{args.name}: versions, newest first (one per promotion)", title_justify="left")
    for column in ("version", "aliases", "run", "metric", "value", "previous holder", "forced", "promoted at (UTC)"):
        table.add_column(column, justify="right" if column in ("version", "value") else "left")
    for record in records:
        previous = record.previous_version or "-"
        if record.previous_version not in (None, "none") and record.previous_value not in (None, "none"):
            previous = f"{record.previous_version} ({_score(record.previous_value)})"
        table.add_row(record.version, escape(", ".join(record.aliases)) or "-", escape(record.run_name or "-"),
                      escape(record.metric or "-"), _score(record.value), escape(previous), record.forced or "-",
                      record.promoted_at or "-")
    console.print(table)
    return 0


def add_parsers(commands) -> None:
    """The promote, registry subcommands."""
    promote = commands.add_parser("promote", help="register the best training run and move an alias (champion) to "
                                                  "it, unless the current holder is better")
    promote.add_argument("--experiment", action="append", required=True, help="candidates' experiment (repeatable)")
    promote.add_argument("--metric", default="val/miou", help="ranks the runs by its final value")
    promote.add_argument("--mode", choices=["max", "min"], default="max")
    promote.add_argument("--alias", default="champion")
    promote.add_argument("--name", default=None, help="registered model name (default: <dataset>-<task>)")
    promote.add_argument("--force", action="store_true",
                         help="promote even when the holder scores better, lacks the metric or used other data")
    promote.set_defaults(handler=cmd_promote)

    registry = commands.add_parser("registry", help="the registered models; with NAME its versions (promotions)")
    registry.add_argument("name", nargs="?", metavar="NAME")
    registry.set_defaults(handler=cmd_registry)
