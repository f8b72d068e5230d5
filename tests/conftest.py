import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FUSIONLAB_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    path = SHARED / "golden"
    if not path.is_dir():
        pytest.fail(f"golden vectors not found at {path}: clone with ../shared beside the repo or set FUSIONLAB_SHARED")
    return path


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance for the session (2 CPUs, a short temp dir: Ray's socket paths have a length limit)."""
    import shutil
    import tempfile

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    # 4 logical CPUs: 2 training workers plus room for Ray Data tasks (they would wait for a free CPU forever).
    from fusionlab.train.local_ray import init_local_ray

    # Bound to 127.0.0.1 as fusionlab's own local Ray is.
    init_local_ray(num_cpus=4, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False,
                   configure_logging=False)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)
