"""Every path a config names is made absolute where it is read (Ray Train's workers run in directories of their own),
and the files are checked on the driver before any trial or worker starts: there, and of the release whose sha256
is recorded for them."""

import os
import re

import pytest
import ray
import yaml

from fusionlab.cli import main
from fusionlab.config import Config, ConfigError, check_named_files
from fusionlab.config.identity import config_changes
from fusionlab.data.synthetic import write_synthetic
from fusionlab.models import pretrained_release as releases
from fusionlab.models.pretrained import PretrainedWeightsError
from fusionlab.models.pretrained_release import PretrainedReleaseError
from fusionlab.train.prepare import load_config
from tiny_grids import BASE, write_grid


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synthetic"
    write_synthetic(path, train=8, val=4, test=4, size=(32, 32), seed=0)
    return path


def config_file(directory, data, **model):
    directory.mkdir(parents=True, exist_ok=True)
    tree = {"data": {**BASE["data"], "path": str(data), "crop": [32, 32]}, "model": {**BASE["model"], **model},
            "train": BASE["train"], "resources": BASE["resources"]}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def weights_file(path, content=b"not really weights"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# --- made absolute where the config is read -----------------------------------------------------------------------


def test_a_relative_pretrained_file_next_to_the_config_is_found_from_another_directory(dataset, tmp_path,
                                                                                        monkeypatch):
    path = config_file(tmp_path / "configs", dataset, pretrained="weights/mini.pth")
    beside = weights_file(tmp_path / "configs" / "weights" / "mini.pth")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_config(path).model.pretrained == str(beside.resolve())


def test_the_current_directory_comes_first_and_a_file_in_neither_is_taken_from_it(dataset, tmp_path, monkeypatch):
    path = config_file(tmp_path / "configs", dataset, pretrained="weights/mini.pth")
    weights_file(tmp_path / "configs" / "weights" / "mini.pth")
    here = weights_file(tmp_path / "cwd" / "weights" / "mini.pth")
    monkeypatch.chdir(tmp_path / "cwd")
    assert load_config(path).model.pretrained == str(here.resolve())
    absent = load_config(path, ["model.pretrained=weights/other.pth"]).model.pretrained  # an override too
    assert absent == str((tmp_path / "cwd" / "weights" / "other.pth").resolve())


def test_a_home_path_is_expanded_and_a_uri_left_alone(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = config_file(tmp_path, dataset, pretrained="~/weights/mini.pth")
    config = load_config(path, ["train.fid.weights=~/fid.pth"])
    assert config.model.pretrained == str(tmp_path / "home" / "weights" / "mini.pth")
    assert config.train.fid.weights == str(tmp_path / "home" / "fid.pth")
    remote = load_config(path, ["data.path=s3://bucket/nyudv2"])
    assert remote.data.path == "s3://bucket/nyudv2"


# --- checked on the driver before anything starts -----------------------------------------------------------------


def test_run_ray_refuses_a_missing_pretrained_file_before_ray_starts(dataset, tmp_path, monkeypatch, no_ray_in_process):
    """A new user's config: ``weights/mini.pth`` where there is none. Today every worker failed after minutes."""
    from fusionlab.train import driver

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started for a config whose weights file is missing")

    monkeypatch.setattr(driver, "ensure_ray", no_ray)
    monkeypatch.chdir(tmp_path)
    config = load_config(config_file(tmp_path / "configs", dataset, pretrained="weights/mini.pth"))
    with pytest.raises(ConfigError) as error:
        driver.run_ray(config, tmp_path / "work")
    message = str(error.value)
    assert "model.pretrained: weights/mini.pth is not there" in message  # the key and the path as written
    assert f"looked for {tmp_path.resolve() / 'weights' / 'mini.pth'} (from the current directory)" in message
    assert str(tmp_path.resolve() / "configs" / "weights" / "mini.pth") in message
    assert "expected an ImageNet weights file" in message
    assert not ray.is_initialized()
    assert not (tmp_path / "work" / "mlflow.db").exists()  # nothing tracked either


def test_a_grid_with_a_missing_weights_file_fails_before_any_trial_starts(dataset, tmp_path, monkeypatch,
                                                                         no_ray_in_process):
    from fusionlab.tune import grid_runner
    from fusionlab.tune.grid import load_grid

    def no_tune(*args, **kwargs):
        raise AssertionError("the grid's trials were started")

    monkeypatch.setattr(grid_runner, "ensure_grid_ray", no_tune)
    monkeypatch.setattr(grid_runner, "_train_on_tune", no_tune)
    monkeypatch.chdir(tmp_path)
    weights_file(tmp_path / "weights" / "there.pth")
    path = write_grid(tmp_path / "grid.yaml", "paths", dataset, [
        ("has weights", {"model.name": "late_fusion", "model.pretrained": "weights/there.pth"}),
        ("lacks weights", {"model.name": "cen", "model.pretrained": "weights/missing.pth"})])
    grid = load_grid(path)  # planning needs no weights
    with pytest.raises(ConfigError, match=re.escape("model.pretrained: weights/missing.pth is not there")) as error:
        grid_runner.run_grid(grid, tmp_path / "work")
    assert "there.pth" not in str(error.value)
    assert not ray.is_initialized()
    assert not (tmp_path / "work" / "mlflow.db").exists()  # no parent run was opened


def test_the_grid_cli_plans_without_the_files_and_refuses_to_launch_without_them(dataset, tmp_path, monkeypatch,
                                                                                 capsys):
    from fusionlab.tune import grid_runner

    def no_tune(*args, **kwargs):
        raise AssertionError("the grid's trials were started")

    monkeypatch.setattr(grid_runner, "_train_on_tune", no_tune)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(tmp_path)
    path = write_grid(tmp_path / "grid.yaml", "paths", dataset,
                      [("CEN", {"model.name": "cen", "model.pretrained": "weights/missing.pth"})],
                      grid={"train_samples": 8, "num_classes": 4})
    workdir = str(tmp_path / "work")
    assert main(["--workdir", workdir, "grid", str(path), "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "not on this machine" in out and "model.pretrained: weights/missing.pth is not there" in out
    assert main(["--workdir", workdir, "grid", str(path)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "error: the config names files that are not there" in out
    assert "model.pretrained: weights/missing.pth is not there" in out


# --- a recorded sha256 --------------------------------------------------------------------------------------------


def model_config(data, weights, backbone="resnet_mini", version="imagenet1k_v1"):
    name = "tokenfusion" if backbone.startswith("mit") else "cen"
    return Config.model_validate({"data": {"path": str(data)}, "model": {
        "name": name, "backbone": backbone, "pretrained": str(weights), "pretrained_version": version}})


def test_a_file_whose_sha256_is_not_the_recorded_release_is_refused_on_the_driver(dataset, tmp_path, monkeypatch):
    weights = weights_file(tmp_path / "resnet101-imagenet.pth")
    with pytest.raises(PretrainedReleaseError, match=r"is not a known torchvision ResNet ImageNet release, but "
                                                     r"model.pretrained_version is imagenet1k_v1"):
        check_named_files(model_config(dataset, weights))
    check_named_files(model_config(dataset, weights, version="any"))  # no hash recorded: only there
    check_named_files(model_config(dataset, weights, backbone="mit_mini"))  # no torchvision release: as the loader
    digest = releases.sha256_file(weights)
    monkeypatch.setitem(releases.KNOWN_FILES, digest[:8], ("resnet_mini", "imagenet1k_v2"))
    with pytest.raises(PretrainedReleaseError, match="is torchvision resnet_mini imagenet1k_v2"):
        check_named_files(model_config(dataset, weights))
    monkeypatch.setitem(releases.KNOWN_FILES, digest[:8], ("resnet_mini", "imagenet1k_v1"))
    check_named_files(model_config(dataset, weights))


def test_a_file_is_hashed_once_per_launch_until_it_changes(dataset, tmp_path, monkeypatch):
    weights = weights_file(tmp_path / "w.pth")
    calls = []
    hash_file = releases.sha256_file
    monkeypatch.setattr(releases, "sha256_file", lambda path: calls.append(path) or hash_file(path))
    monkeypatch.setitem(releases.KNOWN_FILES, hash_file(weights)[:8], ("resnet_mini", "imagenet1k_v1"))
    cells = [model_config(dataset, weights) for _ in range(3)]
    check_named_files(*cells)
    check_named_files(*cells)
    assert len(calls) == 1
    weights_file(weights, b"other bytes")
    os.utime(weights, ns=(1, 1))
    with pytest.raises(PretrainedReleaseError):
        check_named_files(*cells)
    assert len(calls) == 2


def test_the_weights_errors_are_the_users_to_fix():
    from fusionlab.errors import FusionlabError

    assert issubclass(PretrainedWeightsError, FusionlabError) and issubclass(PretrainedWeightsError, ValueError)


def test_a_run_recorded_with_a_relative_path_resumes_with_the_same_path_made_absolute():
    before = {"model.pretrained": "weights/x.pth", "train.epochs": 2}
    assert config_changes(before, {"model.pretrained": "/runs/weights/x.pth", "train.epochs": 2}) == []
    [change] = config_changes(before, {"model.pretrained": "/runs/weights/y.pth", "train.epochs": 2})
    assert change.key == "model.pretrained" and not change.safe
