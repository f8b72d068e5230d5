"""Part of a grid: ``fusionlab grid GRID --cells SLUG,... --seeds S,...`` chooses runs by cell slug and seed, refuses
names the grid does not have, lists and estimates only the chosen runs, trains only them (nothing else of the grid is
prepared, checked or marked), records the choice on the grid's parent run, and a later launch of the whole grid
trains only what is not done yet."""

from __future__ import annotations

import re

import pytest
from rich.console import Console

from fusionlab.config import ConfigError
from fusionlab.data.synthetic import write_synthetic
from fusionlab.tune import grid_runner
from fusionlab.tune.grid import GridError, load_grid, print_dry_run, select
from tiny_grids import UNIMODAL_RGB, fusionlab, grid_runs, write_grid

CELLS = [("CEN, mini", {"model.name": "cen"}), ("RGB only", UNIMODAL_RGB)]  # slugs: cen-mini, rgb-only


def plan(tmp_path, **grid) -> object:
    """A two-cell grid over two seeds whose data is not here (the estimate takes grid.train_samples)."""
    return load_grid(write_grid(tmp_path / "grid.yaml", "part", tmp_path / "nowhere", CELLS,
                                grid={"seeds": [0, 1], "train_samples": 8, "num_classes": 5, **grid}))


def names(grid) -> list[str]:
    return [run.config.run_name() for run in grid.chosen()]


def dry_run_text(grid) -> str:
    console = Console(record=True, width=220)
    print_dry_run(grid, console)
    return " ".join(re.sub("[\u2500-\u257f]", " ", console.export_text()).split())


def test_cells_are_chosen_by_slug_or_by_a_label_without_a_comma_and_seeds_by_value(tmp_path):
    grid = plan(tmp_path)
    assert names(grid) == ["cen-mini-seed0", "cen-mini-seed1", "rgb-only-seed0", "rgb-only-seed1"]
    assert names(select(grid, ["cen-mini"])) == ["cen-mini-seed0", "cen-mini-seed1"]
    assert names(select(grid, ["RGB only"])) == ["rgb-only-seed0", "rgb-only-seed1"]  # its exact label
    assert names(select(grid, seeds=[1])) == ["cen-mini-seed1", "rgb-only-seed1"]
    assert names(select(grid, ["rgb-only", "cen-mini"], [1, 0])) == names(grid)  # file order, whatever the order given
    chosen = select(grid, ["rgb-only"], [1])
    assert names(chosen) == ["rgb-only-seed1"] and chosen.selection.describe() == "--cells rgb-only --seeds 1"
    assert len(chosen.cells_expanded()) == 4, "the grid itself is whole: only the launch's part is chosen"
    assert select(grid, [], []).selection.everything


def test_a_name_or_seed_the_grid_does_not_have_is_refused_naming_the_file_and_what_it_has(tmp_path):
    grid = plan(tmp_path)
    with pytest.raises(GridError) as refused:
        select(grid, ["CEN", "mini"])  # a label with a comma, split at it as --cells does
    message = str(refused.value)
    assert str(grid.path) in message and "--cells: no cell 'CEN', 'mini'" in message
    assert message.endswith("its cells (by slug): cen-mini, rgb-only"), message
    with pytest.raises(GridError) as refused:
        select(grid, ["cen-mini"], [0, 7])
    assert str(grid.path) in str(refused.value) and "--seeds: no seed 7" in str(refused.value)
    assert str(refused.value).endswith("its seeds (grid.seeds): 0, 1")


def test_the_dry_run_lists_and_estimates_only_the_chosen_runs(tmp_path):
    grid = plan(tmp_path)
    every = dry_run_text(grid)
    part = dry_run_text(select(grid, ["rgb-only"], [1]))
    assert "RGB only" in part and "CEN, mini" not in part
    assert "1 of 4 runs: --cells rgb-only --seeds 1" in part and "of 4 runs:" not in every
    assert "total: 1 runs" in part and "total: 4 runs" in every

    def total_hours(text: str) -> float:  # the total row: ... epochs, CPU-h, GiB/worker
        return float(re.search(r"total: \d+ runs (\d+) ([\d.e-]+) ", text)[2])

    row = re.search(r"RGB only unimodal \(rgb\) resnet_mini rgb 1 - - - - 2 ([\d.e-]+) ", part)
    assert row, part
    assert total_hours(part) == float(row[1]) and total_hours(part) < total_hours(every)


def test_a_launch_of_part_of_the_grid_prepares_checks_and_trains_only_that_part(tmp_path, monkeypatch):
    """The chosen runs alone reach the trainer (Ray Tune here, a stand-in): the other cell's weights file, which is
    not there, does not stop the launch, and its run is neither opened nor marked."""
    data = tmp_path / "data"
    write_synthetic(data, train=4, val=2, test=2, size=(48, 64), seed=0)
    cells = [("A", UNIMODAL_RGB), ("B", {"model.name": "cen", "model.pretrained": str(tmp_path / "missing.pth")})]
    grid = load_grid(write_grid(tmp_path / "grid.yaml", "tuned-part", data, cells))
    trained: list[list[str]] = []
    monkeypatch.setattr(grid_runner, "_train_on_tune",
                        lambda grid, pending, *args: trained.append([cell.name for cell in pending]) or {})
    workdir = tmp_path / "runs"
    with pytest.raises(ConfigError, match="missing.pth"):  # the whole grid: B's file is checked, nothing starts
        grid_runner.run_grid(grid, workdir)
    assert trained == []

    outcome = grid_runner.run_grid(select(grid, ["a"]), workdir)
    assert trained == [["a-seed0"]]
    assert [cell.name for cell in outcome.cells] == ["a-seed0"]
    assert [(cell.name, cell.state) for cell in outcome.others] == [("b-seed0", "pending")]
    assert "--cells a: 1 other run(s) not in this launch (1 pending)" in outcome.summary()
    _, parent, children = grid_runs(workdir, "tuned-part")
    assert children == {}, "the stand-in trained nothing, and B was never opened"
    assert parent.data.tags["fusionlab.grid.cells"] == "a" and parent.data.tags["fusionlab.grid.seeds"] == "all"
    assert parent.data.tags["fusionlab.grid.selected_runs"] == "1 of 2"
    assert parent.data.tags["fusionlab.grid.done_runs"] == "0 of 2"


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("COLUMNS", "200")


def test_part_of_a_grid_in_process_then_the_whole_grid_trains_only_what_is_left(tmp_path, env, capsys):
    """In process (``--local``): a launch of one cell trains it alone, marks nothing else and says so; the parent run
    records the choice; the next launch of the whole grid, in the same parent run, trains only the other cell."""
    data = tmp_path / "data"
    write_synthetic(data, train=8, val=4, test=4, size=(48, 64), seed=0)
    grid = write_grid(tmp_path / "grid.yaml", "local-part", data, [("A", UNIMODAL_RGB), ("B", {"model.name": "cen"})],
                      base={"train": {"epochs": 1, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3,
                                      "lr_decoder": 1e-3}})
    workdir = tmp_path / "runs"
    rc, out = fusionlab(capsys, "--workdir", workdir, "grid", grid, "--local", "--cells", "b")
    assert rc == 0, out
    assert "1 of 2 runs: --cells b" in out and "total: 1 runs" in out, out
    assert ("grid local-part: 1 of 1 cells done; --cells b: 1 other run(s) not in this launch (1 pending)" in out), out
    client, parent, children = grid_runs(workdir, "local-part")
    assert set(children) == {"b-seed0"} and children["b-seed0"].info.status == "FINISHED"
    assert parent.info.status == "FINISHED", "every run this launch chose is done"
    tags = parent.data.tags
    assert (tags["fusionlab.grid.cells"], tags["fusionlab.grid.seeds"]) == ("b", "all")
    assert (tags["fusionlab.grid.selected_runs"], tags["fusionlab.grid.done_runs"]) == ("1 of 2", "1 of 2")
    b_before = client.get_run(children["b-seed0"].info.run_id)

    rc, out = fusionlab(capsys, "--workdir", workdir, "grid", grid, "--dry-run")
    assert rc == 0 and "total: 2 runs 1 done, 1 pending" in out, out

    rc, out = fusionlab(capsys, "--workdir", workdir, "grid", grid, "--local")
    assert rc == 0, out
    assert "1 of 2 runs to train (1 done: b-seed0)" in out and "not in this launch" not in out, out
    assert "grid local-part: 2 of 2 cells done (1 already before this launch)" in out, out
    client, same_parent, children = grid_runs(workdir, "local-part")  # asserts one grid parent run
    assert same_parent.info.run_id == parent.info.run_id and same_parent.info.status == "FINISHED"
    assert set(children) == {"a-seed0", "b-seed0"} and children["a-seed0"].info.status == "FINISHED"
    b_after = client.get_run(children["b-seed0"].info.run_id)
    assert (b_after.info.end_time, b_after.data.tags) == (b_before.info.end_time, b_before.data.tags), \
        "the cell done in the first launch was trained or logged again"
    tags = same_parent.data.tags
    assert (tags["fusionlab.grid.cells"], tags["fusionlab.grid.seeds"]) == ("all", "all")
    assert (tags["fusionlab.grid.selected_runs"], tags["fusionlab.grid.done_runs"]) == ("2 of 2", "2 of 2")


def test_an_unknown_cell_on_the_command_line_is_refused_with_the_slugs(tmp_path, env, capsys):
    grid = write_grid(tmp_path / "grid.yaml", "cli-part", tmp_path / "nowhere", CELLS,
                      grid={"train_samples": 8, "num_classes": 5})
    rc, out = fusionlab(capsys, "grid", grid, "--cells", "CEN, mini", "--dry-run")
    assert rc == 1 and "--cells: no cell 'CEN', 'mini'" in out and "its cells (by slug): cen-mini, rgb-only" in out
    rc, out = fusionlab(capsys, "grid", grid, "--cells", "cen-mini", "--cells", "RGB only", "--seeds", "0",
                        "--dry-run")
    assert rc == 0 and "2 of 2 runs: --cells cen-mini,rgb-only --seeds 0" in out, out
    rc, out = fusionlab(capsys, "grid", grid, "--seeds", "3", "--dry-run")
    assert rc == 1 and "--seeds: no seed 3" in out and "its seeds (grid.seeds): 0" in out, out
