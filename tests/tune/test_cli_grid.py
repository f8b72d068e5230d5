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


def test_cityscapes_dry_run_shows_deeplab_on_xception_the_published_rows_and_their_cost(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["grid", str(EXPERIMENTS / "cityscapes_asymfusion.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    grid = load_grid(EXPERIMENTS / "cityscapes_asymfusion.yaml")
    runs = grid.cells_expanded()
    assert {run.config.model.backbone for run in runs} == {"xception65"}
    assert {run.config.model.name for run in runs} == {"unimodal", "asymfusion"}
    assert [run.paper["miou"] for run in runs] == [79.4, 62.3, 82.1]
    for figure in ("79.4", "62.3", "82.1", "xception65"):
        assert figure in out
    assert "GPU-h is an ESTIMATE" in out and "GiB/worker is an ESTIMATE" in out
    row = next(line for line in out.splitlines() if "AsymFusion" in line and "82.1" in line)
    hours, gib = (float(cell) for cell in row.split("│")[-3:-1])
    assert hours > 0 and gib > 0


def test_nyudv2_tokenfusion_dry_run_shows_the_published_rows_on_mit_and_their_cost(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    path = EXPERIMENTS / "nyudv2_tokenfusion.yaml"
    assert main(["grid", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    runs = load_grid(path).cells_expanded()
    for run in runs:
        assert run.label in out
    for figure in ("53.3", "54.2", "78.7", "67.5", "54.8"):
        assert figure in out, figure
    assert "GPU-h is an ESTIMATE" in out and "recipe: reference (every run)" in out
    hours = {}
    for backbone in ("MiT-B1", "MiT-B2", "MiT-B3"):
        row = next(line for line in out.splitlines() if f"TokenFusion, {backbone}" in line)
        hours[backbone], gib = (float(cell) for cell in row.split("│")[-3:-1])
        assert gib > 0
    assert 0 < hours["MiT-B1"] < hours["MiT-B2"] < hours["MiT-B3"]  # a deeper, wider MiT costs more


def test_nyudv2_dry_run_of_one_cell_by_its_slug(capsys, monkeypatch):
    """`--cells cen-resnet-101` (the slug of "CEN, ResNet-101"): that cell alone, its figures, its cost as the total."""
    monkeypatch.setenv("COLUMNS", "250")
    path = EXPERIMENTS / "nyudv2_refinenet.yaml"
    assert main(["grid", str(path), "--cells", "cen-resnet-101", "--dry-run"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "ResNet-1" in line]
    assert len(rows) == 1 and "CEN, ResNet-101" in rows[0], out
    assert "1 of 19 runs: --cells cen-resnet-101" in out and "total: 1 runs" in out
    for figure in ("76.2", "62.8", "51.1"):
        assert figure in rows[0]
    assert "50.8" not in out and "AsymFusion project page" not in out  # another cell's figure and source
    total = next(line for line in out.splitlines() if "total: 1 runs" in line)
    assert total.split("│")[-4:-1] == rows[0].split("│")[-4:-1]  # epochs, GPU-h, GiB/worker: the one run's
