"""``fusionlab train``, ``evaluate``, ``predict`` and ``import-checkpoint``: a model trained, scored, applied to
inputs, or brought in from a reference checkpoint."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from .arguments import csv_list, scale_list


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    from fusionlab.train.driver import run_local, run_ray
    from fusionlab.train.prepare import load_config

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
    from fusionlab.models.multiscale import protocol_label
    from fusionlab.tracking import default_tracking_uri, load_model
    from fusionlab.train.evaluate import evaluate

    predictor = load_model(args.model, args.tracking_uri or default_tracking_uri(args.workdir))
    if Manifest.load(args.data).task == "translation":
        scores = evaluate(predictor, args.data, args.split, features=args.fid_features,
                          weights=args.inception_weights, scales=args.scales, flip=args.flip)
        table = Table(title=f"{args.model} on {args.data} [{args.split}] (ensemble)",
                      caption=f"features: {scores['features']}")
        for column in ("FID", "KID×100", "L1"):
            table.add_column(column, justify="right")
        table.add_row(*(f"{scores[key]:.4g}" for key in ("fid", "kid", "l1")))
        console.print(table)
        return 0
    if args.output_stride is not None:
        from fusionlab.models.segmenter import set_output_stride

        try:
            set_output_stride(predictor, args.output_stride)
        except ValueError as error:
            console.print(f"[red]error:[/] --output-stride: {error}", highlight=False)
            return 2
    metrics = evaluate(predictor, args.data, args.split, scales=args.scales, flip=args.flip)
    stride = f", output stride {args.output_stride}" if args.output_stride else ""
    table = Table(title=f"{args.model} on {args.data} [{args.split}] (ensemble, "
                        f"{protocol_label(args.scales, args.flip)}{stride})")
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


def add_parsers(commands) -> None:
    """The train, evaluate, predict, import-checkpoint subcommands."""
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
    evaluate.add_argument("--scales", type=scale_list, default=[1.0], metavar="S[,S...]",
                          help="segmentation: average the logits over these input scales, e.g. "
                               "0.5,0.75,1,1.25,1.5,1.75 (default 1: single-scale)")
    evaluate.add_argument("--flip", action="store_true",
                          help="segmentation: average in each scale's horizontal mirror image too")
    evaluate.add_argument("--output-stride", type=int, choices=[8, 16], default=None,
                          help="an Xception (DeepLabv3+) model: evaluate at this output stride (trained at 16; "
                               "DeepLab scores at 8)")
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
    imports.add_argument("--modalities", type=csv_list, default=["rgb", "depth"],
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
