"""Names are identifiers, not paths (issue 34): a grid's, a sweep's, a run's or an experiment's name never puts a
file outside the workdir, and a quote in a name is matched as itself by MLflow's search filters.

A grid or sweep name that is not a folder name (``fusionlab.names.NAME_RULE``) is refused at load, naming the file,
the field and the value; a run or experiment name is an MLflow display name (any text but control characters or both
kinds of quote), kept as it is in MLflow and mapped to a folder name where it becomes one."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from mlflow.tracking import MlflowClient

from fusionlab.cli.grid import report_folder
from fusionlab.errors import FusionlabError
from fusionlab.names import NAME_RULE, confined, folder_name, name_problem
from fusionlab.tracking import default_tracking_uri
from fusionlab.train.driver import checkpoint_root, ray_run_storage
from fusionlab.tune.grid_runner import grid_folder
from fusionlab.tune.sweep import sweep_folder, sweep_name

# Each would name a folder outside (or at, or hidden inside) the folder it belongs in.
HOSTILE = ["../../escaped", "a/../../b", "/abs-name", "..", ".", ".hidden", "x\\y", "nul\x00byte", "new\nline", "",
           "-option", "a/b", "../", "it's", "x" * 300]


def write_config(directory: Path, data: Path, **sections) -> Path:
    tree = {"data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [32, 40]},
            "model": {"name": "cen", "backbone": "resnet_mini"},
            "train": {"epochs": 1, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3},
            "tracking": {"experiment": "robustness", "run_name": "robust"}}
    for section, values in sections.items():
        tree[section] = {**tree.get(section, {}), **values}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def write_grid(directory: Path, data: Path, name: str) -> Path:
    tree = {"grid": {"name": name},
            "base": {"data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [32, 40]},
                     "model": {"name": "cen", "backbone": "resnet_mini"}, "train": {"epochs": 1, "batch_size": 4},
                     "resources": {"use_gpu": False}},
            "cells": [{"label": "a"}]}
    path = directory / "grid.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def listing(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


# --- refused at load: the file, the field, the value; nothing written ---------------------------------------------

GRID_NAMES = ["../../escaped-grid", "/tmp/escaped-grid-abs", "..", ".hidden", "a\\b", "two\nlines"]


@pytest.mark.parametrize("name", GRID_NAMES)
@pytest.mark.parametrize("argv", [["--dry-run"], ["--local"]], ids=["dry-run", "local"])
def test_a_grid_name_that_is_a_path_is_refused(cli, tiny_synthetic, tmp_path, name, argv):
    grid = write_grid(tmp_path, tiny_synthetic, name)
    before = listing(tmp_path)
    cli("grid", grid, *argv).refused(str(grid), "grid.name", repr(name), NAME_RULE)
    assert listing(tmp_path) == before  # not even the workdir: refused before anything ran
    assert not (tmp_path / "escaped-grid").exists() and not Path("/tmp/escaped-grid-abs").exists()


@pytest.mark.parametrize("name", ["../../escaped-sweep", "/tmp/escaped-sweep-abs", "..", ".hidden", "a/b"])
def test_a_sweep_name_that_is_a_path_is_refused(cli, tiny_synthetic, tmp_path, name):
    config = write_config(tmp_path, tiny_synthetic, search={
        "name": name, "num_samples": 1, "space": {"train.lr_encoder": {"type": "loguniform", "low": 1e-4,
                                                                       "high": 1e-2}}})
    before = listing(tmp_path)
    cli("tune", config).refused(str(config), "search.name", repr(name), NAME_RULE)
    assert listing(tmp_path) == before
    assert not (tmp_path / "escaped-sweep").exists() and not Path("/tmp/escaped-sweep-abs").exists()


@pytest.mark.parametrize("key,value,fragment", [
    ("run_name", "two\nlines", "control characters"),
    ("run_name", "nul\x00byte", "control characters"),
    ("run_name", "it's \"quoted\"", "not both"),
    ("run_name", "  ", "blank"),
    ("experiment", "tab\there", "control characters"),
    ("experiment", "both ' and \"", "not both"),
], ids=["newline", "nul", "both-quotes", "blank", "experiment-tab", "experiment-both-quotes"])
def test_a_run_or_experiment_name_no_filter_or_log_can_hold_is_refused(cli, tiny_synthetic, tmp_path, key, value,
                                                                       fragment):
    config = write_config(tmp_path, tiny_synthetic, tracking={key: value})
    before = listing(tmp_path)
    cli("train", config, "--local").refused(str(config), f"tracking.{key}", fragment)
    assert listing(tmp_path) == before


# --- display names: kept in MLflow, mapped where they become folders ----------------------------------------------


def test_a_run_named_its_trains_resumes_and_reports_inside_the_workdir(cli, tiny_synthetic, tmp_path):
    """``it's`` crashed MLflow's filter (an unescaped quote); an experiment ``../../escaped-report`` wrote its
    report two levels above the workdir's reports/."""
    workdir = tmp_path / "work" / "runs"
    config = write_config(tmp_path, tiny_synthetic, tracking={"experiment": "../../escaped-report",
                                                              "run_name": "it's"})
    before = listing(tmp_path)
    trained = cli("train", config, "--local", workdir=workdir)
    assert trained.rc == 0, trained.output
    client = MlflowClient(default_tracking_uri(workdir))
    experiment = client.get_experiment_by_name("../../escaped-report")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "it's" and run.info.status == "FINISHED"
    assert [path.name for path in (workdir / "checkpoints").iterdir()] == [folder_name("it's")]
    # found again by its exact name: a resume with other settings is refused, naming the run
    cli("train", config, "--local", "--set", "model.params.lambda=0.01", workdir=workdir).refused(
        "run \"it's\" already exists", "model.params.lambda:")
    reported = cli("report", "--experiment", "../../escaped-report", workdir=workdir)
    assert reported.rc == 0, reported.output
    assert [path.name for path in (workdir / "reports").iterdir()] == [folder_name("../../escaped-report")]
    assert (workdir / "reports" / folder_name("../../escaped-report") / "report.md").is_file()
    assert listing(tmp_path) == before | {"work"} and listing(tmp_path / "work") == {"runs"}
    assert len(client.search_runs([experiment.experiment_id])) == 1


# --- every path built from a name stays under its root ------------------------------------------------------------


def stand_in_config(run_name: str, storage_path: str | None = None, search_name: str | None = None,
                    data: str = "/data/synthetic"):
    return SimpleNamespace(run_name=lambda: run_name, resources=SimpleNamespace(storage_path=storage_path),
                           search=SimpleNamespace(name=search_name, seed=0), model=SimpleNamespace(name="cen"),
                           data=SimpleNamespace(path=data))


def inside(path: Path, root: Path) -> bool:
    return root.resolve() in Path(path).resolve().parents


def built_or_refused(build, root: Path) -> None:
    """``build()`` refuses (FusionlabError) or returns a path strictly inside ``root``."""
    try:
        path = build()
    except FusionlabError as error:
        assert "\x00" in str(error) or "NUL" in str(error) or "outside" in str(error), error
        return
    assert inside(path, root), (path, root)


@pytest.mark.parametrize("name", HOSTILE, ids=repr)
def test_no_path_built_from_a_name_lies_outside_its_folder(tmp_path, name):
    workdir = tmp_path / "work"
    workdir.mkdir()
    built_or_refused(lambda: grid_folder(workdir, name), workdir / "grids")
    built_or_refused(lambda: sweep_folder(workdir, name), workdir / "sweeps")
    built_or_refused(lambda: report_folder(workdir, name), workdir / "reports")
    built_or_refused(lambda: checkpoint_root(stand_in_config(name), workdir), workdir / "checkpoints")
    built_or_refused(lambda: Path(*ray_run_storage(stand_in_config(name), workdir)), workdir / "ray_results")
    storage = tmp_path / "nfs" / "ray_results"
    built_or_refused(lambda: Path(*ray_run_storage(stand_in_config(name, str(storage)), workdir)), storage)
    # a sweep's default name is made from the data folder's: a folder name whatever that is
    assert name_problem(sweep_name(stand_in_config("r", data=f"/data/{name}"))) is None
    # display names (runs, experiments) map to folder names, never refused
    assert name_problem(folder_name(name)) is None


@pytest.mark.parametrize("name", ["../x", "a/../../b", "/abs", "..", ".", ".hidden", "x\\y", "a\x00b", "a\nb", "",
                                  "-x", "x ", "x."])
def test_names_that_are_not_folder_names_are_refused_and_folder_names_kept(name):
    assert name_problem(name) is not None
    assert name_problem(folder_name(name)) is None and folder_name(name) != name


@pytest.mark.parametrize("name", ["nyudv2-refinenet", "cen-resnet101-data-rgb+depth-seed0", "grid v2", "a_b.c=d@e",
                                  "_x", "x" * 128])
def test_folder_names_are_their_own_folder(name):
    assert name_problem(name) is None and folder_name(name) == name


def test_display_names_never_share_a_folder():
    names = ["it's", "it_s", "it s", "it\"s", "a/b", "a_b", "a\\b", "../x", "_.._x", "x" * 200, "x" * 201]
    assert len({folder_name(name) for name in names}) == len(names)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    workdir, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    (workdir / "grids").mkdir(parents=True)
    elsewhere.mkdir()
    (workdir / "grids" / "g").symlink_to(elsewhere)
    with pytest.raises(FusionlabError, match="outside"):
        grid_folder(workdir, "g")
    # a symlinked category folder (checkpoints on another disk) is the root itself: what is in it is inside
    (workdir / "checkpoints").symlink_to(elsewhere)
    assert checkpoint_root(stand_in_config("r"), workdir) == workdir / "checkpoints" / "r"
    with pytest.raises(FusionlabError):
        confined(workdir, "checkpoints", "..", "..")
