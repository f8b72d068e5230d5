"""`fusionlab grid ... --dry-run` as a user runs it: every cell with its paper figures."""

from pathlib import Path

from fusionlab.cli import main
from fusionlab.tune.grid import load_grid

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def test_nyudv2_dry_run_prints_every_cell_and_its_figures(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # a wide terminal: rich wraps no label
    assert main(["grid", str(EXPERIMENTS / "nyudv2_refinenet.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    grid = load_grid(EXPERIMENTS / "nyudv2_refinenet.yaml")
    for run in grid.cells_expanded():
        assert run.label.split(",")[0] in out
    for figure in ("76.2", "62.8", "51.1", "77.0", "64.4", "51.6", "76.6", "63.5", "50.8", "51.2"):
        assert figure in out, figure
    assert "GPU-h is an ESTIMATE" in out
