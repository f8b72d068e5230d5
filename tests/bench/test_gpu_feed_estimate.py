"""bench/gpu_feed_estimate.py: the paper cells it estimates exist in the grids, and one measured case yields
figures consistent with their definitions (compact rows a quarter of the bytes or less, processes rounded up)."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gpu_feed_estimate.py"


@pytest.fixture(scope="module")
def feed():
    spec = importlib.util.spec_from_file_location("gpu_feed_estimate", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_feed_estimate"] = module
    spec.loader.exec_module(module)
    return module


def test_every_case_names_a_cell_of_its_grid(feed):
    for case in feed.CASES:
        run = feed.cell_run(case)
        assert run.label == case.cell and run.config.data.crop is not None


def test_a_small_case_gives_consistent_figures(feed, tmp_path):
    case = feed.Case("tiny NYUDv2", "nyudv2_refinenet.yaml", "CEN, ResNet-101", (48, 64))
    row = feed.measure(case, rows=2, repeats=1, workdir=tmp_path)
    assert row.crop == (500, 500) and row.batch == 6
    assert row.gflops_per_sample > 100, "ResNet-101 RefineNet on two 500x500 inputs"
    assert row.h100_samples_per_s > row.gpu_samples_per_s > 0, "bf16 H100 above TF32 A100 at one MFU"
    assert row.decode_samples_per_s > 0 and row.cpu_prepare_samples_per_s > 0
    assert row.float_bytes >= 4 * row.compact_bytes, "stored rows at 48x64 against float32 crops of 500x500"
    assert row.processes(10.0, 25.0) == 3 and row.processes(10.0, 20.0) == 2
    assert "tiny NYUDv2" in feed.table([row], 0.3)
