"""The ``fusionlab`` command. It only parses arguments and wires the packages together."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from fusionlab.errors import FusionlabError


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
    from fusionlab.models import BACKBONES, TRANSLATION_BACKBONES, list_models, summarize

    if args.backbone not in {*BACKBONES, *TRANSLATION_BACKBONES}:
        known = sorted({*BACKBONES, *TRANSLATION_BACKBONES})
        console.print(f"[red]error:[/] unknown backbone {args.backbone!r}; expected one of {known}")
        return 2
    task = "translation" if args.backbone in TRANSLATION_BACKBONES else "segmentation"
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


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 120x160, got {text!r}") from None
    if height < 8 or width < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return height, width


def _human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def cmd_data_synth(args: argparse.Namespace, console: Console) -> int:
    from fusionlab.data.synthetic import write_synthetic
    from fusionlab.data.synthetic_translation import write_synthetic_translation

    write = write_synthetic_translation if args.task == "translation" else write_synthetic
    size = args.size or ((64, 64) if args.task == "translation" else (120, 160))
    write(args.out, train=args.train, val=args.val, test=args.test, size=size, seed=args.seed,
          overwrite=args.overwrite)
    return cmd_data_inspect(argparse.Namespace(dir=args.out, verify=False), console)


def cmd_data_convert(args: argparse.Namespace, console: Console) -> int:
    from fusionlab.data.converters import convert

    options = {"val_fraction": args.val_fraction} if args.val_fraction is not None else {}
    if args.encoding is not None:
        options["encoding"] = args.encoding
    if args.split_list:
        options["split_lists"] = dict(parse_split_list(item) for item in args.split_list)
    convert(args.kind, args.src, args.out, overwrite=args.overwrite, **options)
    return cmd_data_inspect(argparse.Namespace(dir=args.out, verify=False), console)


def parse_split_list(item: str) -> tuple[str, str]:
    split, sep, path = item.partition("=")
    if not sep or not split or not path:
        raise FusionlabError(f"--split-list expects SPLIT=FILE (e.g. train=train_domain.txt), got {item!r}")
    return split, path


def cmd_data_inspect(args: argparse.Namespace, console: Console) -> int:
    from fusionlab.data import DatasetReader

    reader = DatasetReader(args.dir)
    manifest = reader.manifest
    size = "x".join(map(str, manifest.image_size)) if manifest.image_size else "varies"
    console.print(f"[bold]{manifest.name}[/] ({manifest.task}) at {args.dir}  schema v{manifest.schema_version}, "
                  f"image size {size}")
    modalities = Table(title="modalities")
    for column in ("name", "dtype", "channels", "encoding", "scale", "unit"):
        modalities.add_column(column)
    for name, spec in manifest.modalities.items():
        role = " (target)" if name == manifest.target else ""
        modalities.add_row(name + role, spec.dtype, str(spec.channels), spec.encoding, f"{spec.scale:.6g}",
                           spec.unit or "-")
    console.print(modalities)
    if manifest.label is not None:
        console.print(f"{manifest.label.num_classes} classes (ignore index {manifest.label.ignore_index}): "
                      + ", ".join(manifest.label.classes))
    splits = Table(title="splits")
    for column in ("split", "rows", "shards", "bytes"):
        splits.add_column(column, justify="right")
    for split, shards in manifest.splits.items():
        splits.add_row(split, str(manifest.rows(split)), str(len(shards)),
                       _human_bytes(sum(shard.bytes for shard in shards)))
    console.print(splits)
    if args.verify:
        reader.verify()
        count = sum(len(shards) for shards in manifest.splits.values())
        labels = ", every label is a class or the ignore index" if manifest.label is not None else ""
        console.print(f"[green]verified[/] {count} shards: sizes, sha256 checksums and row counts match the "
                      f"manifest{labels}")
    return 0


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    from fusionlab.config import load_config
    from fusionlab.train.driver import run_local, run_ray

    overrides = args.set + ([f"tracking.uri={args.tracking_uri}"] if args.tracking_uri else [])
    config = load_config(args.config, overrides)
    console.print(f"training [bold]{config.run_name()}[/] ({config.resources.num_workers} worker(s)); "
                  f"tracking experiment [bold]{config.tracking.experiment}[/] in {args.workdir}")
    if args.local:
        reports = run_local(config, args.workdir)
        final = reports[-1] if reports else {}
    else:
        result = run_ray(config, args.workdir, address=args.address)
        final = result.metrics or {}
    for split in ("val", "test"):  # the last epoch's evaluation: on test under train.selection best_test
        if f"{split}/miou" in final:
            console.print(f"done: {split}/miou {final[f'{split}/miou']:.4f}, {split}/pixel_acc "
                          f"{final[f'{split}/pixel_acc']:.4f}, {split}/mean_acc {final[f'{split}/mean_acc']:.4f}")
            break
        if f"{split}/fid" in final:
            console.print(f"done: {split}/fid {final[f'{split}/fid']:.4g}, {split}/kid×100 "
                          f"{final[f'{split}/kid']:.4g}, {split}/l1 {final[f'{split}/l1']:.4f}")
            break
    return 0


def cmd_evaluate(args: argparse.Namespace, console: Console) -> int:
    from fusionlab.data import Manifest
    from fusionlab.tracking import default_tracking_uri, load_model
    from fusionlab.train.evaluate import evaluate, evaluate_translation_model

    predictor = load_model(args.model, args.tracking_uri or default_tracking_uri(args.workdir))
    if Manifest.load(args.data).task == "translation":
        scores = evaluate_translation_model(predictor, args.data, args.split, features=args.fid_features,
                                            weights=args.inception_weights)
        table = Table(title=f"{args.model} on {args.data} [{args.split}] (ensemble)",
                      caption=f"features: {scores['features']}")
        for column in ("FID", "KID×100", "L1"):
            table.add_column(column, justify="right")
        table.add_row(*(f"{scores[key]:.4g}" for key in ("fid", "kid", "l1")))
        console.print(table)
        return 0
    metrics = evaluate(predictor, args.data, args.split)
    table = Table(title=f"{args.model} on {args.data} [{args.split}] (ensemble)")
    for column in ("pixel acc", "mean acc", "mIoU"):
        table.add_column(column, justify="right")
    table.add_row(*(f"{100 * metrics[key]:.2f}" for key in ("pixel_acc", "mean_acc", "miou")))
    console.print(table)
    return 0


def cmd_predict(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from fusionlab.inference import open_inputs, predict
    from fusionlab.inference.outputs import check_out
    from fusionlab.inference.predict import translate
    from fusionlab.tracking import default_tracking_uri, load_model

    check_out(Path(args.out), args.overwrite)  # before loading anything
    predictor = load_model(args.model, args.tracking_uri or default_tracking_uri(args.workdir))
    inputs = open_inputs(args.input, predictor, args.split)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    columns = (TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    if getattr(predictor, "target", None) is not None:  # a translation model: it generates images
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("predict", total=len(inputs))
            samples, seconds = translate(predictor, inputs, args.out, overwrite=args.overwrite,
                                         batch_size=args.batch_size, device=device,
                                         advance=lambda n: progress.advance(task, n))
        console.print(f"generated {samples} {predictor.target} images from {args.input} in {seconds:.1f} s: "
                      f"{Path(args.out) / 'images'}, per-sample table {Path(args.out) / 'predictions.csv'}",
                      highlight=False)
        return 0
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("predict", total=len(inputs))
        summary = predict(predictor, inputs, args.out, overwrite=args.overwrite, batch_size=args.batch_size,
                          device=device, advance=lambda n: progress.advance(task, n))
    total = max(int(summary.pixel_counts.sum()), 1)
    console.print(f"predicted {summary.samples} samples from {args.input} in {summary.seconds:.1f} s", highlight=False)
    table = Table(title="share of predicted pixels")
    table.add_column("class")
    table.add_column("predicted pixels", justify="right")
    order = summary.pixel_counts.argsort()[::-1]
    for k in order[:10]:
        table.add_row(summary.classes[k], f"{100 * summary.pixel_counts[k] / total:.1f}%")
    if len(order) > 10:
        table.add_row(f"({len(order) - 10} more)", f"{100 * summary.pixel_counts[order[10:]].sum() / total:.1f}%")
    console.print(table)
    console.print(f"labels (palette PNG, values = class index) in {summary.out / 'labels'}, overlays in "
                  f"{summary.out / 'overlays'}, per-sample table {summary.out / 'predictions.csv'}", highlight=False)
    return 0


def _layers(text: str) -> tuple[int, int, int, int]:
    try:
        layers = tuple(int(v) for v in text.split(","))
    except ValueError:
        layers = ()
    if len(layers) != 4 or min(layers) < 1:
        raise argparse.ArgumentTypeError(f"expected four bottleneck counts such as 3,4,23,3, got {text!r}")
    return layers


def cmd_import_checkpoint(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from rich.markup import escape

    from fusionlab.checkpoint_import import backbone_label, import_checkpoint
    from fusionlab.models import get_backbone
    from fusionlab.models.resnet import BackboneSpec
    from fusionlab.tracking import default_tracking_uri

    backbone = BackboneSpec(args.layers) if args.layers else args.backbone
    try:
        get_backbone(backbone)  # an unknown name fails here, before the file is read
    except ValueError as error:
        console.print(f"[red]error:[/] --backbone: {escape(str(error))}", highlight=False)
        return 2
    result = import_checkpoint(args.model, args.file, backbone=backbone, num_classes=args.num_classes,
                               modalities=args.modalities,
                               tracking_uri=args.tracking_uri or default_tracking_uri(args.workdir),
                               experiment=args.experiment, run_name=args.run_name, data=args.data,
                               evaluate_splits=args.evaluate, threshold=args.threshold,
                               artifact_root=Path(args.workdir) / "mlartifacts")
    checkpoint = result.checkpoint
    best = "-" if checkpoint.best_val is None else f"{checkpoint.best_val:.4g}"
    console.print(f"imported {escape(args.file)} (sha256 {checkpoint.sha256[:12]}, epoch_start "
                  f"{checkpoint.epoch_start}, best_val {best}) as {args.model} {backbone_label(backbone)}, "
                  f"{len(checkpoint.state)} tensors mapped: {result.model_uri}", highlight=False)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    for key, value in sorted(result.metrics.items()):
        console.print(f"{key} {value:.4f}", highlight=False)
    return 0


def cmd_tune(args: argparse.Namespace, console: Console) -> int:
    from fusionlab.tune.sweep import resume_sweep, start_sweep

    if args.resume:
        console.print(f"resuming sweep {args.resume}")
        _, best = resume_sweep(args.resume, address=args.address)
    else:
        if not args.config:
            raise SystemExit("fusionlab tune: give CONFIG, or --resume SWEEP_DIR")
        from fusionlab.config import load_config

        overrides = args.set + ([f"tracking.uri={args.tracking_uri}"] if args.tracking_uri else [])
        config = load_config(args.config, overrides)
        console.print(f"sweeping {list(config.search.space) if config.search else []} over "
                      f"{config.search.num_samples if config.search else 0} trials; workdir {args.workdir}")
        _, best = start_sweep(config, args.workdir, address=args.address)
    table = Table(title="best trial")
    table.add_column("key")
    table.add_column("value", justify="right")
    for key, value in best.items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    console.print(table)
    return 0


def cmd_grid(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from fusionlab.tune.grid import load_grid, print_dry_run
    from fusionlab.tune.grid_runner import cell_statuses, run_grid

    overrides = args.set + ([f"tracking.uri={args.tracking_uri}"] if args.tracking_uri else [])
    grid = load_grid(args.grid, overrides)
    workdir = Path(args.workdir)
    states = None if grid.planned else {cell.name: cell.state for cell in cell_statuses(grid, workdir)}
    print_dry_run(grid, console, states, devices=args.devices)
    if args.dry_run:
        return 0
    outcome = run_grid(grid, workdir, address=args.address, local=args.local, resume=args.resume, console=console)
    console.print(f"tracked in experiment [bold]{grid.name}[/]; the table: fusionlab --workdir {args.workdir} "
                  f"report --experiment {grid.name}")
    console.print(outcome.summary(), highlight=False, soft_wrap=True)  # one line, for logs and tools
    return 1 if outcome.failed else 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from rich.markup import escape

    from fusionlab.tracking import default_tracking_uri
    from fusionlab.tracking.report import caption, table_columns, table_rows, write_report

    uri = args.tracking_uri or default_tracking_uri(args.workdir)
    out = Path(args.out) if args.out else Path(args.workdir) / "reports" / args.experiment
    report, written, parents = write_report(uri, args.experiment, out, args.split, overwrite=args.overwrite)
    table = Table(title=f"report: {args.experiment}", title_justify="left")
    for index, column in enumerate(table_columns(report, compact=True)):
        table.add_column(column, justify="left" if index < 3 else "right", no_wrap=True)
    for cells in table_rows(report, compact=True):
        table.add_row(*(escape(cell) for cell in cells))
    table.caption = escape(caption(report))
    table.caption_justify = "left"
    console.print(table)
    files = ", ".join(sorted(p.name for p in written.iterdir() if p.is_file()))
    plots = sorted(p.name for p in (written / "plots").glob("*.png"))
    console.print(f"wrote {written}: {files}; plots/: {', '.join(plots)}", highlight=False)
    console.print(f"logged under report/ to {len(parents)} parent run(s)" if parents
                  else "no sweep or grid parent run in this experiment: nothing logged to MLflow", highlight=False)
    return 0


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
    from fusionlab.tracking.registry import RegistryError, promotion_history, registered_models

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
            table.add_row(escape(model.name), escape(model.tags.get("fusionlab.task", "-")),
                          escape(model.tags.get("fusionlab.dataset", "-")), model.latest_version or "-",
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusionlab", description=__doc__)
    parser.add_argument("--workdir", default="fusionlab-runs",
                        help="holds the embedded MLflow store (mlflow.db), Ray results and checkpoints")
    parser.add_argument("--tracking-uri", default=None, help="an MLflow server instead of the embedded store")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list the registered models with parameter counts and fusion points")
    models.add_argument("--backbone", default="resnet101", help="a ResNet (segmentation) or a U-Net (translation)")
    models.add_argument("--num-classes", type=int, default=40)
    models.add_argument("--modalities", type=_csv, default=["rgb", "depth"])
    models.set_defaults(handler=cmd_models)

    data = commands.add_parser("data", help="create, convert and inspect sharded datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    synth = data_commands.add_parser("synth", help="write a procedural synthetic benchmark (RGB-D segmentation, or "
                                     "Taskonomy-like domains -> RGB translation)")
    synth.add_argument("--out", required=True)
    synth.add_argument("--task", choices=["segmentation", "translation"], default="segmentation",
                       help="segmentation: synthetic-rgbd; translation: synthetic-translation")
    synth.add_argument("--train", type=int, default=64)
    synth.add_argument("--val", type=int, default=16)
    synth.add_argument("--test", type=int, default=16)
    synth.add_argument("--size", type=_size, default=None, help="HxW (default 120x160; 64x64 for translation)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--overwrite", action="store_true", help="replace an earlier fusionlab dataset at --out")
    synth.set_defaults(handler=cmd_data_synth)
    convert = data_commands.add_parser("convert", help="convert a public dataset from its own format")
    convert.add_argument("kind", choices=["nyudv2", "sunrgbd", "cityscapes", "taskonomy"])
    convert.add_argument("src")
    convert.add_argument("--out", required=True)
    convert.add_argument("--overwrite", action="store_true", help="replace an earlier fusionlab dataset at --out")
    convert.add_argument("--val-fraction", type=float, default=None,
                         help="nyudv2/sunrgbd: fraction of train carved out as the val split (default 0.1)")
    convert.add_argument("--encoding", choices=["reference", "raw"], default=None,
                         help="taskonomy: the reference's depth/edge encoding (default) or the files' own values")
    convert.add_argument("--split-list", action="append", metavar="SPLIT=FILE",
                         help="taskonomy: take a split's samples from a list file, as the reference's data/*.txt "
                              "(repeat: --split-list train=train_domain.txt --split-list test=val_domain.txt)")
    convert.set_defaults(handler=cmd_data_convert)
    inspect = data_commands.add_parser("inspect", help="summarise a dataset; --verify checks every checksum")
    inspect.add_argument("dir")
    inspect.add_argument("--verify", action="store_true")
    inspect.set_defaults(handler=cmd_data_inspect)

    train = commands.add_parser("train", help="train a model from a config (Ray Train; MLflow tracking)")
    train.add_argument("config")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    train.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    train.add_argument("--local", action="store_true", help="run the loop in this process without Ray")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="metrics of a logged or registered model on a split")
    evaluate.add_argument("--model", required=True, help="runs:/<run id>/model or models:/<name>@<alias>")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--fid-features", choices=["auto", "inception", "local"], default="auto",
                          help="translation: FID/KID features (inception needs the pytorch-fid weights file)")
    evaluate.add_argument("--inception-weights", default=None,
                          help="translation: pt_inception-2015-12-05-6726825d.pth (default: "
                               "$FUSIONLAB_INCEPTION_WEIGHTS, then ~/.cache/fusionlab/)")
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = commands.add_parser("predict", help="label PNGs, overlays and a CSV from a model on a dataset or "
                                                  "an image folder")
    predict.add_argument("--model", required=True, help="runs:/<run id>/model or models:/<name>@<alias>")
    predict.add_argument("--input", required=True,
                         help="an Arrow dataset directory, or a folder DIR/<modality>/<stem>.<png|jpg>")
    predict.add_argument("--out", required=True)
    predict.add_argument("--split", default=None, help="Arrow input: one split (default: every split)")
    predict.add_argument("--batch-size", type=int, default=8, help="Arrow input with a fixed image size")
    predict.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    predict.add_argument("--overwrite", action="store_true", help="replace an earlier predict output at --out")
    predict.set_defaults(handler=cmd_predict)

    imports = commands.add_parser("import-checkpoint", help="log a CEN / AsymFusion reference checkpoint "
                                  "(.pth.tar) as a model that evaluate, predict and promote can use")
    imports.add_argument("model", choices=["cen", "asymfusion"])
    imports.add_argument("file", help="the reference's checkpoint (model-best.pth.tar: segmenter, epoch_start, "
                                      "best_val)")
    depth = imports.add_mutually_exclusive_group(required=True)
    depth.add_argument("--backbone", help="resnet50, resnet101 or resnet152 (the reference's -enc 50/101/152)")
    depth.add_argument("--layers", type=_layers, help="bottlenecks per stage at the standard widths instead of a "
                                                      "named backbone, e.g. 2,2,2,2")
    imports.add_argument("--num-classes", type=int, required=True)
    imports.add_argument("--modalities", type=_csv, default=["rgb", "depth"],
                         help="in the reference's order: its branch m is the m-th (default rgb,depth)")
    imports.add_argument("--threshold", type=float, default=2e-2, help="cen: the exchange threshold it was trained "
                                                                      "with (the reference's bn_threshold)")
    imports.add_argument("--data", default=None, help="the dataset it will be used on: its input encodings and "
                                                      "classes (default: NYUDv2's, as the references)")
    imports.add_argument("--evaluate", action="append", default=[], metavar="SPLIT",
                         help="score the model on this split of --data and log <split>/miou etc. (repeatable)")
    imports.add_argument("--experiment", default="imports", help="MLflow experiment of the run")
    imports.add_argument("--run-name", default=None)
    imports.set_defaults(handler=cmd_import_checkpoint)

    tune = commands.add_parser("tune", help="Optuna + ASHA search over the config's search section (Ray Tune)")
    tune.add_argument("config", nargs="?")
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    tune.add_argument("--resume", metavar="SWEEP_DIR", help="continue an interrupted sweep")
    tune.add_argument("--address", default=None)
    tune.set_defaults(handler=cmd_tune)

    grid = commands.add_parser("grid", help="expand and run a declarative benchmark grid (experiments/*.yaml)")
    grid.add_argument("grid")
    grid.add_argument("--dry-run", action="store_true", help="list the cells, paper figures and cost; run nothing")
    grid.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override every cell")
    grid.add_argument("--address", default=None)
    grid.add_argument("--local", action="store_true", help="run each cell in this process without Ray")
    grid.add_argument("--devices", type=int, default=None, metavar="N",
                      help="estimate the wall time with N devices (GPUs) training cells at once")
    grid.add_argument("--resume", action="store_true",
                      help="continue this workdir's launch of the grid (a plain rerun does too; this insists on it)")
    grid.set_defaults(handler=cmd_grid)

    report = commands.add_parser("report", help="an experiment's runs as the papers' table (Markdown, CSV, plots)")
    report.add_argument("--experiment", required=True, help="the MLflow experiment (a grid's name, a sweep's)")
    report.add_argument("--out", default=None, help="default: WORKDIR/reports/EXPERIMENT (an earlier report there "
                        "is replaced)")
    report.add_argument("--overwrite", action="store_true",
                        help="replace --out even when it is a non-empty directory that is not a fusionlab report")
    report.add_argument("--split", choices=["test", "val"], default=None,
                        help="default: test when every run has test scores, else val")
    report.set_defaults(handler=cmd_report)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from fusionlab.config import ConfigError
    from fusionlab.data import DatasetError

    args = build_parser().parse_args(argv)
    console = Console(width=max(Console().width, 160))
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        return args.handler(args, console)
    except (DatasetError, ConfigError, FusionlabError) as error:
        console.print(f"[red]error:[/] {error}", highlight=False)
        return 1
    except Terminated:
        console.print("[red]terminated[/] (SIGTERM)", highlight=False)
        return 128 + signal.SIGTERM
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so that what it started ends as an interrupt does: an MLflow run ends
    KILLED, staging directories are removed."""


def _terminated(signum, frame):
    raise Terminated()


if __name__ == "__main__":
    sys.exit(main())
