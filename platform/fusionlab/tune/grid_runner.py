"""Run a grid (``tune/grid.py``) as one Ray Tune experiment whose trials are its cells × seeds.

Each trial is the light driver a sweep's trial is (``train.driver.run_ray``: one ``TorchTrainer`` per cell), so
every cell that fits on the cluster trains at once (``grid.max_concurrent`` caps it) and a cell that fails for good
(after ``resources.max_failures`` restarts of its worker group from its last checkpoint) fails alone: the others go
on. There is no searcher: the trials are a fixed list.

MLflow is the record of what is done: one parent run per grid, one child per cell, each found again by its key. A
grid launched again in the same workdir (``fusionlab grid GRID [--resume]``) leaves its finished cells' runs exactly
as they are and continues the others from their last checkpoint in their own MLflow runs. Each launch is its own Tune
experiment, ``<workdir>/grids/<grid>/launch-NNN`` (its trials' logs and errors), so no launch's record is
overwritten by the next.

A launch may run part of the grid (``fusionlab grid GRID --cells SLUG,... --seeds S,...``, ``tune.grid.select``): it
trains the chosen runs not yet done, in the same parent run and a launch folder of its own as any launch, and leaves
every other run as it stands: not prepared, not checked, not trained, never marked failed or killed (a later launch
of the whole grid trains what is still not done). The parent run's tags say what its last launch chose
(``fusionlab.grid.cells``, ``fusionlab.grid.seeds``: ``all`` or the names; ``fusionlab.grid.selected_runs``: "1 of 19")
and how much of the grid is done as it ended (``fusionlab.grid.done_runs``); its status is that launch's: FINISHED
when every run it chose is done, else FAILED (KILLED when interrupted).
"""

from __future__ import annotations

import collections
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusionlab.config import Config, check_named_files
from fusionlab.errors import FusionlabError
from fusionlab.names import confined
from fusionlab.tracking.cells import DONE, FAILED, KILLED, recorded_runs

from .grid import Grid, GridError, GridRun, prepare_run, run_tags

GRIDS_DIR = "grids"


@dataclass(frozen=True)
class CellStatus:
    """A cell × seed and where its MLflow run stands. ``running`` is a RUNNING run: live, or left so by a launch
    that was killed (the next launch continues it)."""

    run: GridRun
    state: str
    run_id: str | None = None
    error: str | None = None
    logs: str | None = None  # where a failed cell's error and logs are

    @property
    def name(self) -> str:
        return self.run.config.run_name()


@dataclass(frozen=True)
class GridOutcome:
    name: str
    parent_run_id: str
    cells: list[CellStatus]  # every cell × seed the launch chose (all of them without --cells/--seeds), after it
    skipped: list[str]  # runs that were done before it: not trained, not logged again
    others: list[CellStatus] = field(default_factory=list)  # the grid's runs it did not choose, as they stand
    selection: str = "every run"  # Selection.describe()

    @property
    def failed(self) -> list[CellStatus]:
        return [cell for cell in self.cells if cell.state != DONE]

    def summary(self) -> str:
        """The launch's last line: how many cells finished, and for each that did not, why and where its logs are."""
        done = len(self.cells) - len(self.failed)
        line = f"grid {self.name}: {done} of {len(self.cells)} cells done"
        if self.skipped:
            line += f" ({len(self.skipped)} already before this launch)"
        if self.others:
            line += (f"; {self.selection}: {len(self.others)} other run(s) not in this launch "
                     f"({state_counts(self.others)})")
        if not self.failed:
            return line
        details = "; ".join(f"{cell.name} {cell.state}" + (f" ({cell.error})" if cell.error else "")
                            + (f", logs: {cell.logs}" if cell.logs else "") for cell in self.failed)
        return f"{line}; {len(self.failed)} failed: {details}"


def state_counts(cells: list[CellStatus]) -> str:
    """``17 pending, 1 done``: how many runs are in each state, most first."""
    counts = collections.Counter(cell.state for cell in cells)
    return ", ".join(f"{count} {state}" for state, count in counts.most_common())


def grid_tracking_uri(grid: Grid, workdir: Path) -> str:
    from fusionlab.train.driver import tracking_uri

    uris = {tracking_uri(run.config, workdir) for run in grid.cells_expanded()}
    if len(uris) != 1:
        raise GridError(f"{grid.path}: the cells of a grid are tracked in one MLflow store; they set tracking.uri to "
                        f"{sorted(uris)}")
    return uris.pop()


def cell_statuses(grid: Grid, workdir: str | os.PathLike) -> list[CellStatus]:
    """Every cell × seed's state, from its MLflow run (read only: a store that does not exist yet stays so)."""
    runs = grid.cells_expanded()
    uri = grid_tracking_uri(grid, Path(workdir).resolve())
    recorded = recorded_runs(uri, grid.name, [run.config.run_name() for run in runs])
    statuses = []
    for run in runs:
        found = recorded[run.config.run_name()]
        statuses.append(CellStatus(run, found.state, found.run_id, found.error))
    return statuses


def run_grid(grid: Grid, workdir: str | os.PathLike, *, address: str | None = None, local: bool = False,
             resume: bool = False, console=None) -> GridOutcome:
    """Train every cell × seed of ``grid`` (of its selection, ``grid.chosen()``) not yet done in ``workdir``; see the
    module docstring.

    ``local`` trains the cells one after another in this process without Ray (debugging); ``resume`` insists there is
    something of the grid to continue. Bad cells (a config the dataset refutes, a file it names that is not there, a
    finished cell whose settings changed) are refused before anything runs; of the runs not chosen, none is looked
    at beyond its MLflow state."""
    from fusionlab.tracking.sweeps import close_parent_run, open_parent_run
    from fusionlab.tracking.tags import GRID_CELLS_TAG, GRID_DONE_TAG, GRID_SEEDS_TAG, GRID_SELECTED_TAG
    from fusionlab.train.driver import check_resume, prepare_tracking

    workdir = Path(workdir).resolve()
    everything = cell_statuses(grid, workdir)
    if resume and all(cell.run_id is None for cell in everything):
        raise GridError(f"{grid.path}: nothing to resume in {workdir}: no cell of grid {grid.name!r} has an MLflow "
                        f"run in {grid_tracking_uri(grid, workdir)}; run it without --resume")
    before, others = _split(grid, everything)
    configs = {cell.name: prepare_run(cell.run) for cell in before}  # generates a synthetic dataset on first use
    check_named_files(*configs.values())  # every cell's weights are there: no trial starts to fail on a missing one
    uri = grid_tracking_uri(grid, workdir)
    for data_path in sorted({config.data.path for config in configs.values()}):  # verified once, before Ray starts
        prepare_tracking(next(c for c in configs.values() if c.data.path == data_path), workdir)
    done = [cell for cell in before if cell.state == DONE]
    for cell in done:  # left as they are, but only if this grid still describes what they trained
        check_resume(uri, configs[cell.name], record=False)
    pending = [cell for cell in before if cell.state != DONE]
    spec = grid.spec.grid
    selection = grid.selection
    parent = open_parent_run(uri, grid.name, f"grid-{grid.name}",
                             {"grid.file": str(grid.path), "grid.cells": len(grid.spec.cells),
                              "grid.seeds": spec.seeds, "grid.overrides": grid.overrides},
                             kind="grid", artifact_root=workdir / "mlartifacts",
                             tags={GRID_CELLS_TAG: ",".join(selection.cells) if selection.cells else "all",
                                   GRID_SEEDS_TAG: ",".join(map(str, selection.seeds)) if selection.seeds else "all",
                                   GRID_SELECTED_TAG: f"{len(before)} of {len(everything)}"})
    if console is not None:
        console.print(f"grid {grid.name}: {len(pending)} of {len(before)} runs to train"
                      + (f" ({len(done)} done: {', '.join(cell.name for cell in done)})" if done else "")
                      + (f"; {selection.describe()}: {len(others)} other run(s) not in this launch, left as they "
                         f"are ({state_counts(others)})" if others else ""),
                      highlight=False)
    logs: dict[str, str] = {}
    status, after, untouched = "FAILED", before, others
    try:
        if pending and local:
            logs = _train_in_process(pending, configs, workdir, parent, console)
        elif pending:
            logs = _train_on_tune(grid, pending, configs, workdir, parent, address)
        chosen, untouched = _split(grid, cell_statuses(grid, workdir))
        after = [_with_logs(cell, logs) for cell in chosen]
        status = "FINISHED" if all(cell.state == DONE for cell in after) else "FAILED"
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the cells left RUNNING continue at the next launch
        status = "KILLED"
        raise
    finally:
        finished = sum(cell.state == DONE for cell in (*after, *untouched))
        close_parent_run(uri, parent, status, tags={GRID_DONE_TAG: f"{finished} of {len(everything)}"})
    return GridOutcome(grid.name, parent, after, [cell.name for cell in done], untouched, selection.describe())


def _split(grid: Grid, statuses: list[CellStatus]) -> tuple[list[CellStatus], list[CellStatus]]:
    """``(chosen, others)``: the runs of the grid's selection, and the rest."""
    chosen = {run.config.run_name() for run in grid.chosen()}
    return ([cell for cell in statuses if cell.name in chosen], [cell for cell in statuses if cell.name not in chosen])


def _with_logs(cell: CellStatus, logs: dict[str, str]) -> CellStatus:
    if cell.name not in logs:
        return cell
    state = cell.state if cell.state in (DONE, KILLED) else FAILED  # pending: its trial failed before its run opened
    return CellStatus(cell.run, state, cell.run_id, cell.error, logs[cell.name])


def _train_in_process(pending: list[CellStatus], configs: dict[str, Config], workdir: Path, parent: str,
                      console) -> dict[str, str]:
    """One cell after another in this process; a cell's failure is recorded on its MLflow run and the next goes on."""
    from fusionlab.train.driver import run_local

    failed = {}
    for index, cell in enumerate(pending, start=1):
        if console is not None:
            console.rule(f"[{index}/{len(pending)}] {cell.run.label} (seed {cell.run.seed})")
        try:
            run_local(configs[cell.name], workdir, parent_run_id=parent, tags=run_tags(cell.run))
        except Exception as error:  # noqa: BLE001 - the run is FAILED with its traceback; the grid goes on
            failed[cell.name] = f"MLflow run artifact error.txt ({type(error).__name__})"
            if console is not None:
                console.print(f"{cell.name} failed: {type(error).__name__}: {error}", highlight=False)
    return failed


def cell_trial(params: dict[str, Any], *, cells: dict[str, dict[str, Any]], workdir: str, parent_run_id: str) -> None:
    """A grid cell's Tune trial: its Train run, named after the cell (not the trial), so any launch continues it."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from fusionlab.data.verify import trust_verification
    from fusionlab.train.driver import run_ray
    from fusionlab.train.placement import releasing_orphaned_placement_groups

    cell = cells[params["cell"]]
    trust_verification(cell.get("verified"))  # hashed once at the launch, not again per cell
    with releasing_orphaned_placement_groups():  # as a sweep's trial: what a stopped trial's Train run left
        run_ray(Config.model_validate(cell["config"]), workdir, parent_run_id=parent_run_id,
                callbacks=[TuneReportCallback()], tags=cell["tags"])


def _train_on_tune(grid: Grid, pending: list[CellStatus], configs: dict[str, Config], workdir: Path, parent: str,
                   address: str | None) -> dict[str, str]:
    """The pending cells as the trials of one Tune experiment; returns each failed trial's error file."""
    from ray import tune

    from fusionlab.data.verify import verification_record
    from fusionlab.train.cluster import check_shared_store, resolve_use_gpu

    from .sweep import DRIVER_RESOURCE

    names = [cell.name for cell in pending]
    concurrent = ensure_grid_ray([configs[name] for name in names], grid.spec.grid.max_concurrent, address)
    check_shared_store(grid_tracking_uri(grid, workdir))
    configs = {name: resolve_use_gpu(configs[name]) for name in names}  # decided once, here, for every trial
    verified = {path: verification_record(path) for path in {configs[name].data.path for name in names}}
    cells = {cell.name: {"config": configs[cell.name].model_dump(mode="json", by_alias=True),
                         "tags": run_tags(cell.run), "verified": verified[configs[cell.name].data.path]}
             for cell in pending}
    trainable = tune.with_resources(
        tune.with_parameters(cell_trial, cells=cells, workdir=str(workdir), parent_run_id=parent),
        {DRIVER_RESOURCE: 1})
    root = grid_folder(workdir, grid.name)
    tuner = tune.Tuner(
        trainable, param_space={"cell": tune.grid_search(names)},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrent),
        # A failed trial is not retried by Tune: its Train run already restarted its worker group
        # resources.max_failures times (and not at all for an error that would only recur, train/failures.py).
        run_config=tune.RunConfig(name=next_launch(root), storage_path=str(root),
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    results = tuner.fit()
    logs = {}
    for result in results:
        if result.error is not None:
            error_file = Path(result.path) / "error.txt"
            logs[result.config["cell"]] = str(error_file if error_file.exists() else result.path)
    return logs


def grid_folder(workdir: Path, name: str) -> Path:
    """``workdir/grids/<name>``, where each launch is a Tune experiment; refused anywhere else (``grid.name`` is
    checked at load: a name, not a path)."""
    return confined(Path(workdir) / GRIDS_DIR, name)


def next_launch(root: Path) -> str:
    numbers = [int(path.name.split("-")[1]) for path in root.glob("launch-*") if path.name.split("-")[1].isdigit()]
    return f"launch-{max(numbers, default=0) + 1:03d}"


def ensure_grid_ray(configs: list[Config], max_concurrent: int | None, address: str | None) -> int | None:
    """Connect to the cluster (``address``, ``RAY_ADDRESS``) or start a local Ray sized for the cells that fit on
    this machine's cores at once; returns the cap on concurrent cells (None: as many as the cluster fits)."""
    import ray

    from fusionlab.train.driver import quiet_ray_data_logs

    from .sweep import DRIVER_RESOURCE

    quiet_ray_data_logs()  # the trials' processes inherit it
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized() or address:
        if not ray.is_initialized():
            ray.init(address=address)
        if ray.cluster_resources().get(DRIVER_RESOURCE, 0) < 1:  # else every trial would wait for it forever
            raise FusionlabError(
                f"the Ray cluster has no {DRIVER_RESOURCE!r} resource, which the cells' trial drivers take: declare "
                f"it on the head (`ray start --head --resources='{{\"{DRIVER_RESOURCE}\": 8}}'`, or the node "
                f"type's resources in a cluster YAML, as cluster/*.yaml do)")
        return max_concurrent
    cell_cpus = max(math.ceil(c.resources.num_workers * c.resources.cpus_per_worker) for c in configs)
    fits = max(1, (os.cpu_count() or 1) // cell_cpus)
    concurrent = min(len(configs), max_concurrent or fits)
    # Per cell: its Train workers' CPUs plus one for its Ray Data tasks, which would otherwise wait for a free CPU
    # while the workers hold them all; the trial drivers take the custom resource, not a CPU (docs/architecture.md).
    from fusionlab.train.local_ray import init_local_ray

    init_local_ray(num_cpus=concurrent * (cell_cpus + 1), resources={DRIVER_RESOURCE: concurrent})
    return concurrent
