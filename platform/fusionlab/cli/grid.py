"""``fusionlab tune``, ``grid`` and ``report``: sweeps, benchmark grids and their tables."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .arguments import csv_list, scale_list


def cmd_tune(args: argparse.Namespace, console: Console) -> int:
    from fusionlab.tune.sweep import resume_sweep, start_sweep

    if args.resume:
        console.print(f"resuming sweep {args.resume}")
        _, best = resume_sweep(args.resume, address=args.address)
    else:
        if not args.config:
            raise SystemExit("fusionlab tune: give CONFIG, or --resume SWEEP_DIR")
        from fusionlab.train.prepare import load_config

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
    from fusionlab.tune.grid import load_grid, print_dry_run, select
    from fusionlab.tune.grid_runner import cell_statuses, run_grid

    overrides = args.set + ([f"tracking.uri={args.tracking_uri}"] if args.tracking_uri else [])
    if args.scales:
        overrides.append(f"model.eval_scales=[{', '.join(map(str, args.scales))}]")
    if args.flip:
        overrides.append("model.eval_flip=true")
    grid = select(load_grid(args.grid, overrides), [name for names in args.cells or [] for name in names],
                  [seed for seeds in args.seeds or [] for seed in seeds])
    workdir = Path(args.workdir)
    states = None if grid.planned else {cell.name: cell.state for cell in cell_statuses(grid, workdir)}
    print_dry_run(grid, console, states, devices=args.devices)
    if args.dry_run:
        return 0
    outcome = run_grid(grid, workdir, address=args.address, local=args.local, resume=args.resume, console=console)
    console.print(f"tracked in experiment [bold]{grid.name}[/]; the table: fusionlab --workdir "
                  f"{shlex.quote(str(args.workdir))} report --experiment {shlex.quote(grid.name)}")
    console.print(outcome.summary(), highlight=False, soft_wrap=True)  # one line, for logs and tools
    return 1 if outcome.failed else 0


def seed_list(text: str) -> list[int]:
    """``0,1`` -> [0, 1]."""
    try:
        return [int(item) for item in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def report_folder(workdir: str | Path, experiment: str) -> Path:
    """The default report folder, ``WORKDIR/reports/<experiment>``: an MLflow experiment's name may hold any text, so
    it goes through ``fusionlab.names.folder_name`` (itself where it is a folder name), and never lies elsewhere. An
    explicit ``--out`` is the user's choice and goes anywhere."""
    from fusionlab.names import confined, folder_name

    return confined(Path(workdir) / "reports", folder_name(experiment))


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from rich.markup import escape

    from fusionlab.tracking import default_tracking_uri
    from fusionlab.tracking.report import caption, table_columns, table_rows, write_report

    uri = args.tracking_uri or default_tracking_uri(args.workdir)
    out = Path(args.out) if args.out else report_folder(args.workdir, args.experiment)
    report, written, parents = write_report(uri, args.experiment, out, args.split, overwrite=args.overwrite,
                                            pairs=[tuple(pair) for pair in args.pair or []], protocol=args.protocol,
                                            mixed=args.mixed)
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


def add_parsers(commands) -> None:
    """The tune, grid, report subcommands."""
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
    grid.add_argument("--cells", type=csv_list, action="append", metavar="SLUG[,SLUG...]",
                      help="run (or list) only these cells, named by slug: the label lower-cased, each run of "
                           "characters other than a-z and 0-9 made one '-' (\"CEN, ResNet-101\" is cen-resnet-101; "
                           "a label without a comma may be given as it is; repeatable); the other cells are left as "
                           "they are")
    grid.add_argument("--seeds", type=seed_list, action="append", metavar="S[,S...]",
                      help="run (or list) only these of the grid's seeds (grid.seeds; repeatable)")
    grid.add_argument("--scales", type=scale_list, default=None, metavar="S1,S2,...",
                      help="segmentation: also score each cell's selected model over these input scales, e.g. "
                           "0.5,0.75,1,1.25,1.5,1.75 (model.eval_scales; logged as val_ms/..., test_ms/...)")
    grid.add_argument("--flip", action="store_true",
                      help="with --scales (or alone): their mirror images too (model.eval_flip)")
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
    report.add_argument("--protocol", choices=["auto", "single", "multi"], default="auto",
                        help="single-scale scores, or the multi-scale ones of runs with model.eval_scales / "
                             "model.eval_flip (default auto: multi-scale when every run has them)")
    report.add_argument("--pair", nargs=2, action="append", metavar=("FIRST", "SECOND"),
                        help="two row labels: the caption gives FIRST − SECOND over the seeds both ran, with its 95%% "
                             "CI (repeatable; default: each exchanging CEN row against CEN without exchange)")
    report.add_argument("--mixed", action="store_true",
                        help="list runs trained on different versions of the dataset (manifest sha256) in one table, "
                             "each row's version in a manifest column; without it such an experiment is refused")
    report.set_defaults(handler=cmd_report)
