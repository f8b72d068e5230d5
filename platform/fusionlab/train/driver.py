"""Launch training: a Ray Train ``TorchTrainer`` (Train V2) on a local or remote Ray, or in-process without Ray."""

from __future__ import annotations

import contextlib
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

from fusionlab.config import Config, check_named_files
from fusionlab.data import Manifest
from fusionlab.data.verify import VERIFIED_TAG, verify_for_training
from fusionlab.names import confined, folder_name

from .checkpoint import CHECKPOINT_SCORE
from .cluster import check_shared_store, resolve_use_gpu
from .context import LocalContext, RayWorkerContext
from .failures import install_failure_policy
from .loop import train_loop


def tracking_uri(config: Config, workdir: Path) -> str:
    from fusionlab.tracking import default_tracking_uri

    return config.tracking.uri or default_tracking_uri(workdir)


def prepare_tracking(config: Config, workdir: Path) -> str:
    """Create the experiment on the driver, with artifacts under the workdir (not the workers' cwd); first the
    dataset's shards are verified against its manifest and a translation run checks that the FID features it needs
    are there."""
    from fusionlab.tracking import ensure_experiment

    check_named_files(config)  # the files it names are there (and their sha256 where recorded)
    verify_for_training(config.data.path)
    if "://" not in config.data.path and Manifest.load(config.data.path).task == "translation":
        from .translation_task import check_feature_weights

        check_feature_weights(config)

    uri = tracking_uri(config, workdir)
    ensure_experiment(uri, config.tracking.experiment, artifact_root=workdir / "mlartifacts")
    return uri


def payload_for(config: Config, workdir: Path, uri: str, parent_run_id: str | None = None,
                tags: dict[str, str] | None = None) -> dict[str, Any]:
    return {"config": config.model_dump(mode="json", by_alias=True), "workdir": str(workdir),
            "tracking_uri": uri, "parent_run_id": parent_run_id, "launch": uuid.uuid4().hex, "started_at": time.time(),
            "tags": {VERIFIED_TAG: verify_for_training(config.data.path), **(tags or {})}}  # verified: a cache hit


def quiet_train_reports() -> None:
    """Ray Train 2.60 logs every report's full metrics dict and every checkpoint's path at INFO from each worker
    (loggers named after their source files); the driver prints one short epoch line instead."""
    import logging

    from ray.train.v2._internal.execution import context, storage

    logging.getLogger(context.__file__).setLevel(logging.WARNING)
    logging.getLogger(storage.__name__).setLevel(logging.WARNING)


def train_fn_per_worker(payload: dict[str, Any]) -> None:
    """Ray Train's per-worker entry point."""
    quiet_train_reports()
    config = Config.model_validate(payload["config"])
    train_loop(payload, RayWorkerContext(config))


def run_local(config: Config, workdir: str | os.PathLike, parent_run_id: str | None = None,
              tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The same loop in this process, one worker, no Ray; checkpoints under ``workdir/checkpoints/<run>``.

    ``parent_run_id`` nests the MLflow run under a sweep's or grid's parent; ``tags`` are added to it."""
    workdir = Path(workdir).resolve()
    uri = prepare_tracking(config, workdir)
    check_resume(uri, config)
    payload = payload_for(config, workdir, uri, parent_run_id, tags)
    context = LocalContext(config, checkpoint_root(config, workdir))
    with ends_honestly(payload, config):
        train_loop(payload, context)
    return context.reports


def checkpoint_root(config: Config, workdir: Path) -> Path:
    """``workdir/checkpoints/<run>``: the run's name as a folder name (``fusionlab.names.folder_name``: itself where
    it is one), refused if it would lie anywhere else."""
    return confined(Path(workdir) / "checkpoints", folder_name(config.run_name()))


def ray_run_storage(config: Config, workdir: Path) -> tuple[str, str]:
    """Ray Train's ``(storage_path, name)`` for the run: ``resources.storage_path`` (default ``workdir/ray_results``)
    and the run's name as a folder name; a local run folder that would lie outside its storage is refused."""
    storage = config.resources.storage_path or str(Path(workdir) / "ray_results")
    name = folder_name(config.run_name())
    if "://" not in storage:
        confined(storage, name)
    return storage, name


def check_resume(uri: str, config: Config, record: bool = True) -> None:
    """A run started again under its name resumes it: only with the settings it was trained with, or safe changes
    (config/identity.py), checked against its MLflow run here and against its checkpoint in the loop."""
    from fusionlab.tracking.lifecycle import check_resume as check_tracked_run

    digest = None if "://" in config.data.path else Manifest.load(config.data.path).digest
    check_tracked_run(uri, config, digest, record=record)


@contextlib.contextmanager
def ends_honestly(payload: dict[str, Any], config: Config):
    """A failed or interrupted launch ends its MLflow run FAILED or KILLED, with the error (the loop's own run only:
    see ``lifecycle.mark_launch_ended``); a worker's error that is the user's to fix is raised as itself."""
    from fusionlab.tracking.lifecycle import mark_launch_ended

    from .failures import cause_and_traceback, deterministic_cause, torn_down_by_tune

    try:
        yield
    except BaseException as error:
        if torn_down_by_tune(error):
            raise
        unwrapped, trace = cause_and_traceback(error)  # the worker's own error, not Ray's wrapper of it
        mark_launch_ended(payload["tracking_uri"], config.tracking.experiment, config.run_name(), payload["launch"],
                          error, cause=unwrapped, trace=trace)
        cause = deterministic_cause(error)
        if cause is not None and cause is not error:
            raise cause from None
        raise


def quiet_ray_data_logs() -> None:
    """Ray Data's INFO lines (execution plans, "dataset finished", one set per epoch and split) to its log file only.

    Ray Data reads its logging config from the file named by ``RAY_DATA_LOGGING_CONFIG`` in every process that imports
    it; set here before Ray starts locally, its workers inherit it. An explicit setting is left alone."""
    if "RAY_DATA_LOGGING_CONFIG" in os.environ:
        return
    try:
        from ray.data._internal.logging import DEFAULT_CONFIG
    except ImportError:  # a Ray that moved it: keep its default logging
        return
    import copy
    import tempfile

    import yaml

    config = copy.deepcopy(DEFAULT_CONFIG)
    config["handlers"]["console"]["level"] = "WARNING"
    path = Path(tempfile.gettempdir()) / f"fusionlab-ray-data-logging-{os.getuid()}.yaml"
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(yaml.safe_dump(config))
    partial.replace(path)
    os.environ["RAY_DATA_LOGGING_CONFIG"] = str(path)


def ensure_ray(config: Config, address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        return
    # Logical CPUs for the workers plus one for Ray Data's read/decode tasks, which otherwise wait for a free CPU
    # while the workers hold them all (docs/architecture.md).
    needed = math.ceil(config.resources.num_workers * config.resources.cpus_per_worker) + 1
    from .local_ray import init_local_ray

    init_local_ray(num_cpus=max(os.cpu_count() or 1, needed))


def scaling_config(config: Config):
    """The run's workers: ``resources.use_gpu`` decided already (train/cluster.py), placed as
    ``resources.placement`` says (default STRICT_PACK: one cell's DDP group on one node)."""
    import ray.train

    resources = config.resources
    if resources.use_gpu == "auto":
        raise ValueError("resources.use_gpu must be decided before the run is launched (train/cluster.py)")
    return ray.train.ScalingConfig(num_workers=resources.num_workers, use_gpu=resources.use_gpu,
                                   placement_strategy=resources.placement.upper(),
                                   resources_per_worker={"CPU": resources.cpus_per_worker,
                                                         **resources.worker_resources})


def run_ray(config: Config, workdir: str | os.PathLike, address: str | None = None,
            parent_run_id: str | None = None, callbacks: list | None = None, tags: dict[str, str] | None = None):
    """Train with Ray Train; an interrupted run started again with the same name resumes from its checkpoint."""
    quiet_ray_data_logs()  # before ray.data is first imported
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    from .prepare import check_batch_fits
    from .progress import progress_callback

    check_batch_fits(config, config.resources.num_workers)  # each worker drops its last incomplete batch
    workdir = Path(workdir).resolve()
    uri = prepare_tracking(config, workdir)
    check_resume(uri, config)
    ensure_ray(config, address)
    config = resolve_use_gpu(config)
    check_shared_store(uri)
    payload = payload_for(config, workdir, uri, parent_run_id, tags)
    storage, name = ray_run_storage(config, workdir)
    install_failure_policy()
    ray.data.DataContext.get_current().enable_progress_bars = False  # the epoch lines are the progress
    # No Ray Data dataset is handed to the workers: each maps its node's copy of the splits and decodes its own part
    # of each epoch and of the evaluation split, seeded as the in-process path (RayWorkerContext).
    trainer = TorchTrainer(
        train_fn_per_worker,
        train_loop_config=payload,
        scaling_config=scaling_config(config),
        run_config=ray.train.RunConfig(
            # resources.storage_path: a bucket or NFS every node reaches; a run started again resumes from there
            name=name, storage_path=storage,
            # The best ranked (the selected epoch's first: train/selection.py) and the latest, which resume reads.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.train.keep_checkpoints,
                                                         checkpoint_score_attribute=CHECKPOINT_SCORE,
                                                         checkpoint_score_order="max"),
            # A lost worker (node gone, process killed) restarts the group from the last checkpoint; the run and
            # its MLflow run keep their names, so the epochs already reported are not trained or logged again.
            failure_config=ray.train.FailureConfig(max_failures=config.resources.max_failures),
            callbacks=[progress_callback(config.train.epochs, config.run_name()), *(callbacks or [])]),
    )
    with ends_honestly(payload, config):
        return trainer.fit()
