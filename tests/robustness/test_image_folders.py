"""Image folders for ``predict`` (``DIR/<modality>/<stem>.png``): every malformed folder exits non-zero naming the
file or folder and what the model expected, before any output is written."""

import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from fusionlab.tracking import default_tracking_uri

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_configs import config_tree  # noqa: E402


@pytest.fixture(scope="module")
def model(tiny_synthetic, tmp_path_factory):
    """A CEN run of one epoch on the tiny dataset: (workdir, runs:/ URI)."""
    from fusionlab.train.driver import run_local
    from fusionlab.train.prepare import parse_config

    workdir = tmp_path_factory.mktemp("folder-model")
    config = parse_config(config_tree(tiny_synthetic, train={"epochs": 1}, data={"crop": [32, 40]},
                                      tracking={"experiment": "folders"}))
    run_local(config, workdir)
    client = MlflowClient(default_tracking_uri(workdir))
    (run,) = client.search_runs([client.get_experiment_by_name("folders").experiment_id])
    return workdir, f"runs:/{run.info.run_id}/model"


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def rgb(size=(32, 40)):
    return np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)


def depth(size=(32, 40), dtype=np.uint16):
    return np.random.default_rng(1).integers(0, 2000, size).astype(dtype)


def good_folder(root: Path) -> Path:
    save(root / "rgb" / "a.png", rgb())
    save(root / "depth" / "a.png", depth())
    return root


def no_depth_folder(root):
    save(root / "rgb" / "a.png", rgb())
    return root, ["depth: no such folder", "one folder per input modality"]


def empty_folders(root):
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    return root, ["no .png/.jpg/.jpeg images under rgb/, depth/"]


def unmatched_stem(root):
    good_folder(root)
    save(root / "rgb" / "b.png", rgb())
    return root, ["b.png has no matching depth image", str(root / "depth" / "b")]


def sizes_differ(root):
    save(root / "rgb" / "a.png", rgb())
    save(root / "depth" / "a.png", depth((16, 20)))
    return root, ["images of 'a' differ in size", "is 32x40", "is 16x20"]


def eight_bit_depth(root):
    save(root / "rgb" / "a.png", rgb())
    save(root / "depth" / "a.png", depth(dtype=np.uint8))
    return root, ["a.png", "an 8-bit image where 16-bit values are expected", "expects uint16"]


def gray_for_colour(root):
    save(root / "rgb" / "a.png", rgb()[..., 0])
    save(root / "depth" / "a.png", depth())
    return root, ["rgb/a.png", "expects uint8 with 3 channel(s)"]


def damaged_png(root):
    good_folder(root)
    (root / "rgb" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    return root, ["rgb/a.png: unreadable image"]


def shared_stem(root):
    good_folder(root)
    save(root / "rgb" / "a.jpg", rgb())
    return root, ["share the stem 'a'"]


def missing_dir(root):
    return root / "nowhere", ["input directory not found", "nowhere"]


CASES = [no_depth_folder, empty_folders, unmatched_stem, sizes_differ, eight_bit_depth, gray_for_colour, damaged_png,
         shared_stem, missing_dir]


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_a_malformed_image_folder_is_refused_before_any_output(case, cli, model, tmp_path):
    workdir, uri = model
    folder, fragments = case(tmp_path / "images")
    out = tmp_path / "out"
    cli("predict", "--model", uri, "--input", folder, "--out", out, workdir=workdir).refused(*fragments)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # nothing staged beside it


def test_split_on_an_image_folder_is_refused(cli, model, tmp_path):
    workdir, uri = model
    folder = good_folder(tmp_path / "images")
    cli("predict", "--model", uri, "--input", folder, "--out", tmp_path / "out", "--split", "test",
        workdir=workdir).refused("--split applies to Arrow datasets", "image folder")


def test_a_good_folder_predicts(cli, model, tmp_path):
    workdir, uri = model
    result = cli("predict", "--model", uri, "--input", good_folder(tmp_path / "images"), "--out", tmp_path / "out",
                 workdir=workdir)
    assert result.rc == 0, result.output
    assert (tmp_path / "out" / "labels" / "a.png").is_file()
