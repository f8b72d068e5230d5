"""The ``fusionlab`` command. It only parses arguments and wires the packages together."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table


def _csv(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def _describe_points(points: list[str], limit: int = 4) -> str:
    if len(points) <= limit:
        return ", ".join(points) or "-"
    return f"{len(points)}: {points[0]} ... {points[-1]}"


def cmd_models(args: argparse.Namespace, console: Console) -> int:
    from fusionlab.models import BACKBONES, list_models, summarize

    if args.backbone not in BACKBONES:
        console.print(f"[red]error:[/] unknown backbone {args.backbone!r}; expected one of {sorted(BACKBONES)}")
        return 2
    table = Table(title=f"fusionlab models - {args.backbone}, {args.num_classes} classes, "
                        f"modalities {','.join(args.modalities)}")
    table.add_column("model")
    table.add_column("branches")
    table.add_column("parameters", justify="right")
    table.add_column("fusion points")
    for name in list_models():
        try:
            summary = summarize(name, backbone=args.backbone, num_classes=args.num_classes,
                                modalities=args.modalities)
        except ValueError as error:  # e.g. a fusion model given a single modality
            table.add_row(name, "-", "-", f"[yellow]{error}[/]")
            continue
        table.add_row(name, summary.branches, f"{summary.parameters:,}", _describe_points(summary.fusion_points))
    console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusionlab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list the registered models with parameter counts and fusion points")
    models.add_argument("--backbone", default="resnet101")
    models.add_argument("--num-classes", type=int, default=40)
    models.add_argument("--modalities", type=_csv, default=["rgb", "depth"])
    models.set_defaults(handler=cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(width=max(Console().width, 120))
    return args.handler(args, console)


if __name__ == "__main__":
    sys.exit(main())
