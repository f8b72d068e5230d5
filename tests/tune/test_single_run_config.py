"""experiments/nyudv2_cen_r101.yaml is the "CEN, ResNet-101" cell of experiments/nyudv2_refinenet.yaml as a plain
`fusionlab train` config: both files are read and compared key by key, so the two cannot drift apart."""

from pathlib import Path

import yaml

from fusionlab.config import absolute_paths, validate_config
from fusionlab.tune.grid import is_grid_file, load_grid, select

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
SINGLE = EXPERIMENTS / "nyudv2_cen_r101.yaml"
GRID, CELL = EXPERIMENTS / "nyudv2_refinenet.yaml", "cen-resnet-101"
# What may differ, and only this: the names MLflow files the run under (the grid's experiment and run names are the
# grid's own; a single run is tracked apart from the grid's cells).
MAY_DIFFER = {"tracking.experiment", "tracking.run_name"}


def test_the_single_run_config_is_the_grid_cell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the data and weights are in neither place: both resolve them the same way
    tree = yaml.safe_load(SINGLE.read_text())
    assert not is_grid_file(tree)
    single = validate_config(absolute_paths(tree, SINGLE.parent), origin=str(SINGLE)).flat()
    [run] = select(load_grid(GRID), [CELL]).chosen()
    cell = run.config.flat()
    assert set(single) == set(cell)
    differ = {key for key in cell if single[key] != cell[key]}
    assert differ == MAY_DIFFER, {key: (single[key], cell[key]) for key in differ}
    assert (cell["model.name"], cell["model.backbone"], cell["train.epochs"]) == ("cen", "resnet101", 300)


def test_its_header_quotes_the_cells_published_figures_and_commands():
    comment = SINGLE.read_text().split("\nrecipe:")[0]
    header = " ".join(line.lstrip("#").strip() for line in comment.splitlines())  # a phrase may wrap
    [run] = select(load_grid(GRID), [CELL]).chosen()
    for key in ("pixel_acc", "mean_acc", "miou"):
        assert f"{run.paper[key]:.1f}" in header, key
    assert "official CEN README's single-scale NYUDv2 table" in header and "github.com/yikaiw/CEN" in header
    for command in ("fusionlab data convert nyudv2", "fusionlab train experiments/nyudv2_cen_r101.yaml",
                    f"fusionlab grid experiments/nyudv2_refinenet.yaml --cells {CELL}"):
        assert command in header, command
