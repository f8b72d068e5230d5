"""``fusionlab data``: write a synthetic benchmark, convert a public dataset, inspect and verify one."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from fusionlab.errors import FusionlabError


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 120x160, got {text!r}") from None
    if height < 8 or width < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return height, width


def _non_negative(what: str):
    """An argparse type: an integer >= 0, refused with a message saying what it counts."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} (an integer >= 0), got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{what} is an integer >= 0, got {value}")
        return value

    return parse


_count = _non_negative("a number of samples")  # 0 leaves the split out of the dataset
_seed = _non_negative("a seed")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"a fraction is in [0, 1), got {text}")
    return value


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
        from fusionlab.data.reader import SAMPLED_ROWS

        reader.verify()
        count = sum(len(shards) for shards in manifest.splits.values())
        labels = ", every label is a class or the ignore index" if manifest.label is not None else ""
        console.print(f"[green]verified[/] {count} shards: sizes, sha256 checksums and row counts match the "
                      f"manifest, every row's size and split match it, the first {SAMPLED_ROWS} rows of each shard "
                      f"decode as it describes{labels}")
    return 0


def add_parsers(commands) -> None:
    """The data subcommands."""
    data = commands.add_parser("data", help="create, convert and inspect sharded datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    synth = data_commands.add_parser("synth", help="write a procedural synthetic benchmark (RGB-D segmentation, or "
                                     "Taskonomy-like domains -> RGB translation)")
    synth.add_argument("--out", required=True)
    synth.add_argument("--task", choices=["segmentation", "translation"], default="segmentation",
                       help="segmentation: synthetic-rgbd; translation: synthetic-translation")
    synth.add_argument("--train", type=_count, default=64, help="samples in train (0: no train split)")
    synth.add_argument("--val", type=_count, default=16, help="samples in val (0: no val split)")
    synth.add_argument("--test", type=_count, default=16, help="samples in test (0: no test split)")
    synth.add_argument("--size", type=_size, default=None, help="HxW (default 120x160; 64x64 for translation)")
    synth.add_argument("--seed", type=_seed, default=0)
    synth.add_argument("--overwrite", action="store_true", help="replace an earlier fusionlab dataset at --out")
    synth.set_defaults(handler=cmd_data_synth)
    convert = data_commands.add_parser("convert", help="convert a public dataset from its own format")
    convert.add_argument("kind", choices=["nyudv2", "sunrgbd", "cityscapes", "taskonomy"])
    convert.add_argument("src")
    convert.add_argument("--out", required=True)
    convert.add_argument("--overwrite", action="store_true", help="replace an earlier fusionlab dataset at --out")
    convert.add_argument("--val-fraction", type=_fraction, default=None,
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
