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
