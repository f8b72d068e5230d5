"""The ``fusionlab`` command. It only parses arguments and wires the packages together."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from fusionlab.credentials import TRACKING_URI_ENV, remember_uri
from fusionlab.errors import FusionlabError

# Each group of subcommands, its handlers and its arguments, in a module of its own.
from . import data, grid, models, registry, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusionlab", description=__doc__)
    parser.add_argument("--workdir", default="fusionlab-runs",
                        help="holds the embedded MLflow store (mlflow.db), Ray results and checkpoints")
    parser.add_argument("--tracking-uri", default=os.environ.get(TRACKING_URI_ENV) or None,
                        help=f"an MLflow server (or database) instead of the embedded store (default: "
                             f"${TRACKING_URI_ENV}, else the workdir's mlflow.db); a password in it is never recorded")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (models, data, train, grid, registry):  # the order `fusionlab --help` lists them in
        group.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from fusionlab.config import ConfigError
    from fusionlab.data import DatasetError

    args = build_parser().parse_args(argv)
    if args.tracking_uri:  # from here on only its redacted form is printed or recorded
        args.tracking_uri = remember_uri(args.tracking_uri)
    console = Console(width=max(Console().width, 160), emoji=False)  # user text like a:b:c stays as typed
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        return args.handler(args, console)
    except (DatasetError, ConfigError, FusionlabError) as error:
        # escaped: a message quotes keys and values in brackets ("missing encoder keys [conv1.weight, ...]"), which
        # rich would otherwise take for markup tags and drop
        console.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
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
