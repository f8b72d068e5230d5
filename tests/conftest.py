import contextlib
import os
import sys
import threading
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDEN = REPO_ROOT / "tests" / "data" / "golden"  # the reference implementations' vectors, with their provenance
# The suite reads nothing beside the clone: an open of a file in this directory (where the project's notes once lived
# and a development checkout may still have them) fails the session (the audit hook below).
OUTSIDE = REPO_ROOT.parent / "shared"
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
    _install_outside_audit()


# --- The suite is self-contained: every open of a file in OUTSIDE is recorded, and fails the session at its end. ---
# An audit hook sees every open() of this process (io.open, open_code for imports, numpy and torch file reads);
# processes the tests start (the CLI, Ray's workers) are not watched. Under pytest-xdist each worker records its own
# and hands them to the controller, which fails the run.

_OUTSIDE_PREFIXES = tuple({str(OUTSIDE) + os.sep, os.path.realpath(OUTSIDE) + os.sep})
_RESOLVE_UNDER = str(REPO_ROOT) + os.sep  # a link inside the clone may point out: those paths are resolved
_SKIP_RESOLVE = str(REPO_ROOT / ".venv") + os.sep  # ... except the venv's thousands of imports
_outside_opens: list[str] = []
_audit = threading.local()
_audit_installed = False
_WORKER_KEY = "fusionlab_outside_opens"


def outside_open(event: str, args: tuple) -> None:
    """The audit hook: records ``open`` events whose path resolves inside OUTSIDE."""
    if event != "open" or getattr(_audit, "busy", False):
        return
    path = args[0]
    if path is None or isinstance(path, int):  # an open file descriptor: its path was audited when it was opened
        return
    _audit.busy = True  # resolving a path must not audit itself
    try:
        full = os.path.abspath(os.fsdecode(path))
        if full.startswith(_RESOLVE_UNDER) and not full.startswith(_SKIP_RESOLVE):
            full = os.path.realpath(full)
        if (full + os.sep).startswith(_OUTSIDE_PREFIXES):
            _outside_opens.append(full)
    except Exception:  # noqa: BLE001 - an exception here would fail the open itself
        pass
    finally:
        _audit.busy = False


def _install_outside_audit() -> None:
    global _audit_installed
    if not _audit_installed:  # an audit hook cannot be removed: one per process
        sys.addaudithook(outside_open)
        _audit_installed = True


@pytest.fixture
def outside_opens() -> list[str]:
    """The opens inside OUTSIDE this process has recorded so far (a test that makes one on purpose removes it)."""
    return _outside_opens


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist's controller: collect what a worker recorded."""
    _outside_opens.extend(getattr(node, "workeroutput", {}).get(_WORKER_KEY, []))


def pytest_sessionfinish(session, exitstatus):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: the controller decides
        workeroutput[_WORKER_KEY] = list(_outside_opens)
        return
    if not _outside_opens:
        return
    lines = [f"the tests opened {len(_outside_opens)} file(s) outside the repository, in {OUTSIDE}:"]
    lines += [f"  {path}" for path in dict.fromkeys(_outside_opens)]
    lines.append("the suite must need nothing beside the clone: copy what it reads into tests/data/")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write("\n")
    for line in lines:
        if reporter is not None:
            reporter.write_line(line, red=True)
        else:
            print(line, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """The golden vectors of the reference implementations (tests/data/golden/README.md: provenance and rule)."""
    return GOLDEN


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

