"""``fusionlab tune``: Ray Tune + Optuna (TPE, seeded, study in SQLite) + ASHA, each trial a Ray Train run.

A trial is a light driver function (Train V2 pattern) that builds the TorchTrainer for its sampled config with
``TuneReportCallback``; its Train run and MLflow child run are named after the trial id, so a resumed sweep
continues them instead of starting new ones.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from fusionlab.config import Config, ConfigError, check_named_files, set_dotted
from fusionlab.errors import FusionlabError
from fusionlab.names import confined, folder_name
from fusionlab.train.prepare import check_batch_fits, parse_config

from .search_space import apply_sample, optuna_space

SWEEP_FILE = "sweep.json"
STUDY_FILE = "optuna.db"
DRIVER_RESOURCE = "tune_driver"


def sweep_name(config: Config) -> str:
    """``search.name`` (a folder name, checked at load), else one made from the model, data folder and seed (mapped
    to a folder name where the data folder's name is not one: ``fusionlab.names.folder_name``)."""
    if config.search.name:
        return config.search.name
    return folder_name(f"{config.model.name}-search-{Path(config.data.path).name}-seed{config.search.seed}")


def sweep_folder(workdir: Path, name: str) -> Path:
    """``workdir/sweeps/<name>``: its ``sweep.json``, the Optuna study and Tune's state; refused anywhere else."""
    return confined(Path(workdir) / "sweeps", name)


def trial_fn(sample: dict[str, Any], *, base_tree: dict[str, Any], workdir: str, parent_run_id: str,
             sweep: str, verified: dict[str, Any] | None = None) -> None:
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from fusionlab.data.verify import trust_verification
    from fusionlab.train.driver import run_ray

    trust_verification(verified)  # hashed once at the launch, not again per trial
    from fusionlab.train.placement import releasing_orphaned_placement_groups

    trial_id = ray.tune.get_context().get_trial_id()
    tree = set_dotted(apply_sample(base_tree, sample), "tracking.run_name", f"{sweep}-{trial_id}")
    config = parse_config(set_dotted(tree, "search", None), origin=f"trial {trial_id}")
    # A trial that ASHA stopped leaves its Train run's placement group behind (train/placement.py): free its CPUs.
    with releasing_orphaned_placement_groups():
        run_ray(config, workdir, parent_run_id=parent_run_id, callbacks=[TuneReportCallback()])


def ensure_tune_ray(config: Config, address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    concurrent = config.search.max_concurrent_trials
    from fusionlab.train.driver import quiet_ray_data_logs

    quiet_ray_data_logs()  # the trials' processes inherit it
    if address:
        ray.init(address=address)
        return
    # Per trial: its Train workers plus one CPU for Ray Data; the trial drivers use a custom resource, because
    # a CPU each would starve the workers on small machines (docs/architecture.md). No headroom for a trial that
    # ASHA stops: Ray keeps its Train run's placement group while the sweep's job lives, and Ray Train's cleaner
    # misses the dead controller when another Ray runs on the machine or there is no dashboard, so trial_fn
    # releases the groups of dead controllers itself (train/placement.py).
    workers = math.ceil(config.resources.num_workers * config.resources.cpus_per_worker)
    needed = concurrent * (workers + 1)
    from fusionlab.train.local_ray import init_local_ray

    init_local_ray(num_cpus=max(os.cpu_count() or 1, needed), resources={DRIVER_RESOURCE: concurrent})


def start_sweep(config: Config, workdir: str | os.PathLike, address: str | None = None):
    """Start a new sweep under ``workdir/sweeps/<name>``; returns ``(results, best)``."""
    from fusionlab.tracking.sweeps import open_parent_run
    from fusionlab.train.driver import prepare_tracking

    if config.search is None:
        raise ConfigError("the config has no search section: add search.space (e.g. model.params.lambda)")
    check_batch_fits(config, config.resources.num_workers)  # else every trial fails inside Ray
    workdir = Path(workdir).resolve()
    uri = prepare_tracking(config, workdir)
    name = sweep_name(config)
    sweep_dir = sweep_folder(workdir, name)
    if (sweep_dir / SWEEP_FILE).exists():
        raise ConfigError(f"sweep {sweep_dir} already exists; continue it with `fusionlab tune --resume {sweep_dir}` "
                          f"or set search.name")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    state = {"config": config.model_dump(mode="json", by_alias=True), "workdir": str(workdir),
             "tracking_uri": uri, "name": name,
             "parent_run_id": open_parent_run(uri, config.tracking.experiment, name, config.flat())}
    partial = sweep_dir / f".{SWEEP_FILE}.partial"
    partial.write_text(json.dumps(state, indent=2))
    partial.replace(sweep_dir / SWEEP_FILE)
    return _fit(state, sweep_dir, restore=False, address=address)


def resume_sweep(sweep_dir: str | os.PathLike, address: str | None = None):
    """Continue an interrupted sweep: finished trials are kept, the searcher's state and study are reloaded."""
    sweep_dir = Path(sweep_dir).resolve()
    if not (sweep_dir / SWEEP_FILE).is_file():
        raise ConfigError(f"{sweep_dir} is not a sweep directory (no {SWEEP_FILE})")
    state = json.loads((sweep_dir / SWEEP_FILE).read_text())
    # before Ray starts, as a new sweep's prepare_tracking does: the files it names are still there
    check_named_files(Config.model_validate(state["config"]))
    return _fit(state, sweep_dir, restore=True, address=address)


def _fit(state: dict[str, Any], sweep_dir: Path, restore: bool, address: str | None):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from fusionlab.data.verify import verification_record
    from fusionlab.train.cluster import check_shared_store, resolve_use_gpu

    from .study_searcher import StudySearcher

    config = Config.model_validate(state["config"])
    search = config.search
    ensure_tune_ray(config, address)
    check_shared_store(state["tracking_uri"])
    config = resolve_use_gpu(config)  # decided once, here, for every trial
    base_tree = config.model_dump(mode="json", by_alias=True)
    trainable = tune.with_resources(
        tune.with_parameters(trial_fn, base_tree=base_tree, workdir=state["workdir"],
                             parent_run_id=state["parent_run_id"], sweep=state["name"],
                             verified=verification_record(config.data.path)),
        {DRIVER_RESOURCE: 1})
    storage = f"sqlite:///{sweep_dir / STUDY_FILE}"
    if restore:
        tuner = tune.Tuner.restore(str(sweep_dir), trainable=trainable)
    else:
        searcher = StudySearcher(state["name"], storage, optuna_space(search), search.metric, search.mode,
                                 seed=search.seed, sweep_dir=str(sweep_dir))
        scheduler = None
        if search.scheduler.type == "asha":
            # max_t one past the last epoch: a trial that reaches it must end by itself, after logging its model.
            scheduler = ASHAScheduler(time_attr="training_iteration", max_t=config.train.epochs + 1,
                                      grace_period=search.scheduler.grace_period,
                                      reduction_factor=search.scheduler.reduction_factor)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(metric=search.metric, mode=search.mode, search_alg=searcher,
                                        scheduler=scheduler, num_samples=search.num_samples,
                                        max_concurrent_trials=search.max_concurrent_trials,
                                        time_budget_s=search.time_budget_s),
            # Tune's experiment is the sweep's folder itself (its name, not the recorded one: never outside it)
            run_config=tune.RunConfig(name=sweep_dir.name, storage_path=str(sweep_dir.parent)),
        )
    results = tuner.fit()
    best = summarise(state, config, results, storage)
    return results, best


def summarise(state: dict[str, Any], config: Config, results, storage: str) -> dict[str, Any]:
    """Log the trials table, parameter plots and importances to the parent run; return the best trial."""
    import optuna
    import pandas as pd

    from fusionlab.tracking.sweeps import log_sweep_summary

    search = config.search
    rows = []
    for result in results:
        row = {"trial_id": result.metrics.get("trial_id") if result.metrics else None}
        row.update({key: (result.config or {}).get(key) for key in search.space})
        row[search.metric] = (result.metrics or {}).get(search.metric)
        row["epochs"] = epochs_trained(result.metrics or {})
        row["status"] = "error" if result.error else "done"
        rows.append(row)
    trials = pd.DataFrame(rows)
    study = optuna.load_study(study_name=state["name"], storage=storage)
    try:
        importances = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError):  # fewer than two finished trials, or no variation
        importances = None
    finished = trials.dropna(subset=[search.metric])
    best: dict[str, Any] = {"mode": search.mode, "metric": search.metric}
    if len(finished):
        index = finished[search.metric].idxmax() if search.mode == "max" else finished[search.metric].idxmin()
        best.update({key: finished.loc[index, key] for key in [*search.space, search.metric, "trial_id"]})
    stopped = {f"{state['name']}-{row['trial_id']}" for row in rows  # ended by the scheduler, not by an error
               if row["status"] == "done" and (row["epochs"] or 0) < config.train.epochs}
    log_sweep_summary(state["tracking_uri"], state["parent_run_id"], trials,
                      {key: space.type for key, space in search.space.items()}, search.metric, importances, best,
                      stopped)
    if not len(finished):  # a sweep with nothing to show is a failure, not an empty table
        from fusionlab.tracking.sweeps import close_parent_run

        close_parent_run(state["tracking_uri"], state["parent_run_id"], "FAILED")
        errors = [result.error for result in results if result.error]
        first = f"; the first error: {first_line(errors[0])}" if errors else ""
        raise FusionlabError(f"sweep {state['name']!r}: none of its {len(rows)} trial(s) reported "
                             f"{search.metric} ({len(errors)} failed){first}")
    return best


def epochs_trained(metrics: dict[str, Any]) -> int | None:
    """A trial's epochs from its last report: the loop's own epoch index, not Tune's ``training_iteration``, which
    counts again from 1 in a trial restored from its checkpoint."""
    if "epoch" in metrics:
        return int(metrics["epoch"]) + 1
    return metrics.get("training_iteration")


def first_line(error: BaseException) -> str:
    """A trial's error as one line: the worker's own exception where Ray wrapped it."""
    from fusionlab.train.failures import deterministic_cause, worker_cause

    cause = deterministic_cause(error) or worker_cause(error)
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[-1] if text else ''}"
