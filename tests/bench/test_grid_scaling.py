"""bench/grid_scaling.py's pieces that need no cluster: its grid file is a valid 4-cell grid asking one slot per
cell, and the epoch and start-up figures are read off the runs' records as documented."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "grid_scaling.py"


@pytest.fixture(scope="module")
def grid_scaling():
    spec = importlib.util.spec_from_file_location("grid_scaling", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["grid_scaling"] = module
    spec.loader.exec_module(module)
    return module


def test_the_grid_file_has_four_one_slot_cells(grid_scaling, tmp_path):
    from fusionlab.tune.grid import load_grid

    grid = load_grid(grid_scaling.grid_file(tmp_path / "g.yaml", "scaling", tmp_path / "data", 3, (48, 64), 4, 2))
    runs = grid.cells_expanded()
    assert len(runs) == 4 and grid.spec.grid.max_concurrent == 2
    for run in runs:
        assert run.config.resources.worker_resources == {"slot": 1.0} and run.config.resources.cpus_per_worker == 1
        assert run.config.train.epochs == 3


def test_epoch_and_start_up_figures(grid_scaling):
    gaps = {"a": [5.0, 2.0, 2.2], "b": [6.0, 2.4, 2.0]}  # the first gap holds epoch 0's warm-up: left out
    assert grid_scaling.median_epoch(gaps) == pytest.approx(2.1)
    result = {"gaps": gaps, "startups": {"a": 30.0, "b": 40.0}}  # time to the first report, less one epoch
    assert grid_scaling.startup(result) == pytest.approx(((30.0 - 2.1) + (40.0 - 2.2)) / 2)
