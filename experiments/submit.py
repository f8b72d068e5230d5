"""Run a grid on the Ray cluster this script runs in: `fusionlab grid` with a cluster's defaults.

    ray submit cluster/aws-gpu.yaml experiments/submit.py -- experiments/nyudv2_refinenet.yaml
    ray submit cluster/aws-gpu.yaml experiments/submit.py -- experiments/nyudv2_refinenet.yaml --cells cen-resnet-101
    ray job submit --working-dir experiments -- python submit.py nyudv2_refinenet.yaml

Connects to the running cluster (RAY_ADDRESS, else "auto"), prints the grid's dry-run table (cells, paper figures,
cost estimate, each run's state in the workdir) and runs the grid as one Ray Tune experiment whose trials are its
cells × seeds (`fusionlab.tune.grid_runner.run_grid`, as `fusionlab grid` does): every cell the cluster fits trains
at once, a failed cell fails alone, and submitting the same grid again continues it (finished cells are kept).
Defaults: --workdir from FUSIONLAB_WORKDIR (shared storage on a multi-node cluster) else fusionlab-runs;
--tracking-uri from MLFLOW_TRACKING_URI (on the cluster YAMLs' nodes: the MLflow database every node reaches, since
training workers log from the GPU nodes; its password is never recorded) else the workdir's sqlite store; --storage
(each cell's checkpoints) $FUSIONLAB_STORAGE/ray_results where set, else the workdir. Exits 1 if a cell failed.
See docs/clusters.md.
"""

import argparse
import os
import sys
from pathlib import Path

from fusionlab.cli.arguments import csv_list
from fusionlab.cli.grid import seed_list


def resolve_grid(name: str) -> Path:
    """GRID as given (relative to the current directory), else in the repository fusionlab is installed from."""
    import fusionlab

    repo = Path(fusionlab.__file__).resolve().parents[2]  # platform/fusionlab/__init__.py
    for candidate in (Path(name), repo / name, repo / "experiments" / name):
        if candidate.is_file():
            return candidate.resolve()
    return Path(name)  # fusionlab reports it as not found


def storage_default() -> str | None:
    storage = os.environ.get("FUSIONLAB_STORAGE")
    return f"{storage.rstrip('/')}/ray_results" if storage else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", help="a grid file (experiments/*.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override every cell")
    parser.add_argument("--workdir", default=os.environ.get("FUSIONLAB_WORKDIR", "fusionlab-runs"))
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--storage", default=storage_default(),
                        help="where Ray Train keeps each cell's checkpoints (resources.storage_path); default: "
                             "$FUSIONLAB_STORAGE/ray_results where that is set (the cluster YAMLs' bucket)")
    parser.add_argument("--dry-run", action="store_true", help="the table only; needs no cluster")
    parser.add_argument("--cells", type=csv_list, action="append", metavar="SLUG[,SLUG...]",
                        help="only these cells, as `fusionlab grid --cells` (slugs; repeatable)")
    parser.add_argument("--seeds", type=seed_list, action="append", metavar="S[,S...]",
                        help="only these of the grid's seeds (repeatable)")
    args = parser.parse_args(argv)

    from rich.console import Console

    from fusionlab.config import ConfigError
    from fusionlab.data import DatasetError
    from fusionlab.errors import FusionlabError

    console = Console(width=max(Console().width, 160))  # as the CLI: a job log is no terminal, tables stay whole
    try:
        return submit(args, console)
    except (ConfigError, DatasetError, FusionlabError) as error:
        console.print(f"[red]error:[/] {error}", highlight=False)
        return 1


def submit(args: argparse.Namespace, console) -> int:
    from fusionlab.tune.grid import load_grid, print_dry_run, select
    from fusionlab.tune.grid_runner import cell_statuses, run_grid

    overrides = [*([f"resources.storage_path={args.storage}"] if args.storage else []),
                 *args.set, *([f"tracking.uri={args.tracking_uri}"] if args.tracking_uri else [])]
    grid = select(load_grid(resolve_grid(args.grid), overrides), [name for names in args.cells or [] for name in names],
                  [seed for seeds in args.seeds or [] for seed in seeds])
    print_dry_run(grid, console, None if grid.planned else {c.name: c.state for c in cell_statuses(grid, args.workdir)})
    if args.dry_run:
        return 0
    import ray

    address = os.environ.get("RAY_ADDRESS") or "auto"
    ray.init(address=address)  # fail here, before any MLflow run is opened, when no cluster is running
    print(f"connected to the Ray cluster at {address}: {ray.cluster_resources()}", flush=True)
    outcome = run_grid(grid, args.workdir, address=address, console=console)
    console.print(outcome.summary(), highlight=False, soft_wrap=True)  # one line, for logs and tools
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    sys.exit(main())
