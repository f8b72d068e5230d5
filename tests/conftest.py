import contextlib
import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FUSIONLAB_SHARED", REPO_ROOT.parent / "shared"))
# The production topology's fixtures (PostgreSQL, S3, an MLflow server on both): tests/production.py
pytest_plugins = ["production"]


def pytest_configure(config):
    """Each pytest-xdist process uses its share of the cores: torch's default of one thread per core in every process
    oversubscribes the machine (two processes, each with as many threads as there are cores, beside Ray's), and its
    OpenMP threads spin waiting for cores the others hold. Subprocesses the tests start (the CLI, Ray's workers)
    inherit the setting."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    path = SHARED / "golden"
    if not path.is_dir():
        pytest.fail(f"golden vectors not found at {path}: clone with ../shared beside the repo or set FUSIONLAB_SHARED")
    return path


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """The Ray experiments end to end (a grid, a sweep, a cluster: marked ``ray_experiment``) first and on one process
    (pytest-xdist ``--dist loadgroup``), one after another: two at once on two cores time out in Ray's own start-up
    waits. The other slow tests next, then the unit tests, all shared out among the processes."""
    for item in items:
        if item.get_closest_marker("ray_experiment"):
            item.add_marker(pytest.mark.xdist_group("ray-experiments"))
    items.sort(key=lambda item: (item.get_closest_marker("ray_experiment") is None,
                                 item.get_closest_marker("slow") is None))


@pytest.fixture(scope="session", autouse=True)
def _mlflow_schema_built_once(tmp_path_factory):
    """Every test that tracks opens a fresh SQLite store, and MLflow builds a new one by running its ~60 schema
    migrations (1.5 s each time here). In this process, a new store is instead a copy of one built that way once,
    made with SQLite's backup API; stores made by subprocesses (the CLI, Ray workers) are built by MLflow itself."""
    import sqlite3

    import mlflow.store.db.utils as db_utils
    import mlflow.store.model_registry.sqlalchemy_store as registry_store
    import sqlalchemy

    build = db_utils._initialize_tables
    template = tmp_path_factory.mktemp("mlflow-schema") / "mlflow.db"

    def initialize_from_template(engine):
        if engine.url.get_backend_name() != "sqlite" or engine.url.database in (None, "", ":memory:"):
            return build(engine)
        if not template.exists():
            template_engine = sqlalchemy.create_engine(f"sqlite:///{template}")
            build(template_engine)
            template_engine.dispose()
        with contextlib.closing(sqlite3.connect(template)) as source, engine.connect() as target:
            source.backup(target.connection.driver_connection)

    patched = pytest.MonkeyPatch()
    patched.setattr(db_utils, "_initialize_tables", initialize_from_template)
    patched.setattr(registry_store, "_initialize_tables", initialize_from_template)
    yield
    patched.undo()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


STORE_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "FUSIONLAB_ARTIFACT_ROOT")


@pytest.fixture(autouse=True)
def _no_tracking_store_from_the_environment():
    """The CLI's store defaults to ``MLFLOW_TRACKING_URI``: each test starts without one (a developer's shell may
    export it), and one a test sets (a password URI remembered by the config) ends with the test."""
    saved = {name: os.environ.pop(name, None) for name in STORE_ENV}
    yield
    for name, value in saved.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value


@pytest.fixture(scope="session")
def _local_ray_starter():
    """Starts this process's local Ray on first use (2 CPUs, a short temp dir: Ray's socket paths have a length
    limit), and again after a test that needed the process to itself (``no_ray_in_process``) shut it down."""
    import shutil
    import tempfile

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from fusionlab.train.local_ray import init_local_ray

    temp_dirs = []

    def start():
        if not ray.is_initialized():
            temp_dirs.append(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
            # 4 logical CPUs: 2 training workers plus room for Ray Data tasks (they would wait for a free CPU
            # forever). Bound to 127.0.0.1 as fusionlab's own local Ray is.
            init_local_ray(num_cpus=4, include_dashboard=False, _temp_dir=temp_dirs[-1], log_to_driver=False,
                           configure_logging=False)
        return ray

    yield start
    ray.shutdown()
    for temp_dir in temp_dirs:
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def ray_local(_local_ray_starter):
    """This process's local Ray (the ``ray`` module, initialised)."""
    return _local_ray_starter()


@pytest.fixture
def no_ray_in_process():
    """No Ray initialised in this process (a test that connects it elsewhere): the shared local one, if a test
    started it on this worker, is shut down; ``ray_local`` starts it again for the next test that asks."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def stand_in_trainer(monkeypatch):
    """``run_ray`` without Ray: no cluster is joined, and its ``TorchTrainer`` is a stand-in whose keyword arguments
    (``scaling_config``, ``run_config``, ...) land in the returned dict; ``fit`` returns ``"fitted"``."""
    import ray.train.torch

    from fusionlab.train import driver

    built: dict = {}

    class StandInTrainer:
        def __init__(self, *args, **kwargs):
            built.update(kwargs)

        def fit(self):
            return "fitted"

    monkeypatch.setattr(driver, "ensure_ray", lambda config, address: None)
    monkeypatch.setattr(ray.train.torch, "TorchTrainer", StandInTrainer)
    return built

