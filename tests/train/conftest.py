import os

import pytest

from fusionlab.data.synthetic import write_synthetic

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory):
    """32/8/8 synthetic RGB-D scenes at 48x64: enough to see learning in a few CPU epochs."""
    out = tmp_path_factory.mktemp("data") / "synthetic"
    write_synthetic(out, train=32, val=8, test=8, size=(48, 64), seed=0)
    return out


@pytest.fixture
def no_inception_file(monkeypatch, tmp_path):
    """FID falls back to the local extractor unless a test provides the Inception file."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FUSIONLAB_INCEPTION_WEIGHTS", raising=False)
