"""The dataset writers (``data synth``, ``data convert``, ``DatasetWriter``) replace only a fusionlab dataset: never a
file, a directory that is not a dataset, or a dataset holding files of someone else's — even with ``--overwrite``."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusionlab.cli import main
from fusionlab.data import DatasetError, DatasetReader, Manifest
from fusionlab.data.converters import convert
from fusionlab.data.synthetic import write_synthetic

SMALL = ["--train", "2", "--val", "1", "--test", "1", "--size", "16x16"]


def nyu_prepared(src: Path) -> Path:
    """The smallest NYUDv2 prepared-PNG folder: one train and one val sample of 8x8."""
    rng = np.random.default_rng(0)
    for stem in ("0001", "0002"):
        for folder, array in (("rgb", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)),
                              ("masks", rng.integers(0, 40, (8, 8), dtype=np.uint8)),
                              ("depth", rng.integers(0, 9000, (8, 8)).astype(np.uint16))):
            (src / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(src / folder / f"{stem}.png")
    line = "rgb/{0}.png\tmasks/{0}.png\tdepth/{0}.png\n".format
    (src / "train.txt").write_text(line("0001"))
    (src / "val.txt").write_text(line("0002"))
    return src


def user_dir(path: Path) -> Path:
    path.mkdir()
    (path / "k.txt").write_text("a")
    return path


def writers(tmp_path: Path):
    src = nyu_prepared(tmp_path / "src")
    return {"synth": lambda out, **kw: write_synthetic(out, train=2, val=1, test=1, size=(16, 16), **kw),
            "convert": lambda out, **kw: convert("nyudv2", src, out, val_fraction=0.0, **kw)}


@pytest.mark.parametrize("writer", ["synth", "convert"])
def test_overwrite_onto_a_directory_that_is_not_a_dataset_is_refused_and_its_files_kept(tmp_path, writer):
    out = user_dir(tmp_path / "x")
    with pytest.raises(DatasetError, match=r"x exists and is not a fusionlab dataset .*no manifest.json"):
        writers(tmp_path)[writer](out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["k.txt"] and (out / "k.txt").read_text() == "a"
    assert not list(tmp_path.glob(".x.*"))  # refused before any work: no staging dir either


@pytest.mark.parametrize("writer", ["synth", "convert"])
def test_overwrite_onto_a_regular_file_is_refused_and_the_file_kept(tmp_path, writer):
    out = tmp_path / "x"
    out.write_text("a")
    with pytest.raises(DatasetError, match=r"x exists and is not a directory"):
        writers(tmp_path)[writer](out, overwrite=True)
    assert out.is_file() and out.read_text() == "a"


def test_a_dataset_with_a_file_of_someone_elses_is_not_replaced(tmp_path):
    out = tmp_path / "ds"
    write_synthetic(out, train=2, val=1, test=1, size=(16, 16))
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match=r"ds holds files that are not part of its dataset \(notes.txt\)"):
        write_synthetic(out, train=3, val=1, test=1, size=(16, 16), overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and Manifest.load(out).rows("train") == 2


@pytest.mark.parametrize("writer", ["synth", "convert"])
def test_an_earlier_dataset_is_replaced_with_overwrite_and_the_new_one_reads(tmp_path, writer):
    write = writers(tmp_path)[writer]
    out = tmp_path / "ds"
    first = write(out)
    with pytest.raises(DatasetError, match="already exists .*pass --overwrite"):
        write(out)
    second = write(out, overwrite=True)
    assert second.splits.keys() == first.splits.keys()
    reader = DatasetReader(out)
    assert sum(1 for split in reader.manifest.splits for _ in reader.iter_samples(split)) > 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # nothing retired left


def test_cli_synth_onto_a_user_directory_is_refused_with_the_path_and_flag(tmp_path, capsys):
    out = user_dir(tmp_path / "x")
    assert main(["data", "synth", "--out", str(out), *SMALL, "--overwrite"]) == 1
    message = " ".join(capsys.readouterr().out.split())
    assert str(out) in message and "--overwrite replaces only a fusionlab dataset" in message
    assert (out / "k.txt").read_text() == "a"


def test_an_empty_directory_is_written_into(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert main(["data", "synth", "--out", str(out), *SMALL]) == 0
    assert Manifest.load(out).rows("train") == 2
