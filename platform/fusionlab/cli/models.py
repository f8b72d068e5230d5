"""``fusionlab models``: the registered models with parameter counts and fusion points."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from .arguments import csv_list


def _describe_points(points: list[str], limit: int = 4) -> str:
    if len(points) <= limit:
        return ", ".join(points) or "-"
    return f"{len(points)}: {points[0]} ... {points[-1]}"


def cmd_models(args: argparse.Namespace, console: Console) -> int:
    from fusionlab.models import BACKBONES, TRANSLATION_BACKBONES, list_models, summarize

    if args.backbone not in {*BACKBONES, *TRANSLATION_BACKBONES}:
        known = sorted({*BACKBONES, *TRANSLATION_BACKBONES})
        console.print(f"[red]error:[/] unknown backbone {args.backbone!r}; expected one of {known}")
        return 2
    task = "translation" if args.backbone in TRANSLATION_BACKBONES else "segmentation"
    if args.weight_keys:
        return _print_weight_keys(args.backbone, task, console)
    outputs = "3 output channels" if task == "translation" else f"{args.num_classes} classes"
    num_classes = 3 if task == "translation" else args.num_classes
    table = Table(title=f"fusionlab {task} models - {args.backbone}, {outputs}, "
                        f"modalities {','.join(args.modalities)}")
    table.add_column("model")
    table.add_column("branches")
    table.add_column("parameters", justify="right")
    table.add_column("fusion points")
    for name in list_models(task=task):
        try:
            summary = summarize(name, backbone=args.backbone, num_classes=num_classes, modalities=args.modalities,
                                task=task)
        except ValueError as error:  # e.g. a fusion model given a single modality
            table.add_row(name, "-", "-", f"[yellow]{error}[/]")
            continue
        table.add_row(name, summary.branches, f"{summary.parameters:,}", _describe_points(summary.fusion_points))
    console.print(table)
    return 0


def _print_weight_keys(backbone: str, task: str, console: Console) -> int:
    from fusionlab.models.pretrained import imagenet_weight_keys

    if task != "segmentation":
        console.print(f"[red]error:[/] --weight-keys: {backbone} is a translation backbone; ImageNet weights are "
                      "for the segmentation encoders")
        return 2
    for key, shape in imagenet_weight_keys(backbone).items():
        console.print(f"{key}  {list(shape)}", highlight=False, soft_wrap=True)
    return 0


def add_parsers(commands) -> None:
    """The models subcommands."""
    models = commands.add_parser("models", help="list the registered models with parameter counts and fusion points")
    models.add_argument("--backbone", default="resnet101",
                        help="a registered backbone (models/backbones/; an unknown name lists them all)")
    models.add_argument("--num-classes", type=int, default=40)
    models.add_argument("--modalities", type=csv_list, default=["rgb", "depth"])
    models.add_argument("--weight-keys", action="store_true",
                        help="print the keys and shapes an ImageNet weights file (model.pretrained) of the backbone "
                             "holds, one modality's")
    models.set_defaults(handler=cmd_models)
