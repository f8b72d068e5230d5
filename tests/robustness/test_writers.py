"""Robustness table, writers: an ``--out`` a command did not create (a file, a link, a directory of someone else's)
is refused before any work, with the path and the flag that overrides (if any); what was there is left intact."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SMALL = ["--train", "2", "--val", "1", "--test", "1", "--size", "16x16"]


def user_dir(root: Path, dataset: Path) -> Path:
    (root / "x").mkdir()
    (root / "x" / "k.txt").write_text("a")
    return root / "x"


def user_file(root: Path, dataset: Path) -> Path:
    (root / "x").write_text("a")
    return root / "x"


def user_link(root: Path, dataset: Path) -> Path:
    (root / "elsewhere").mkdir()
    (root / "x").symlink_to(root / "elsewhere")
    return root / "x"


def dataset_with_notes(root: Path, dataset: Path) -> Path:
    (dataset / "notes.txt").write_text("a")
    return dataset


def a_dataset(root: Path, dataset: Path) -> Path:
    return dataset


def nyu_source(root: Path) -> Path:
    """A one-sample NYUDv2 prepared-PNG folder: a real source, so only --out can be what is refused."""
    src = root / "nyu"
    rng = np.random.default_rng(0)
    for folder, array in (("rgb", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)),
                          ("masks", rng.integers(0, 40, (8, 8), dtype=np.uint8)),
                          ("depth", rng.integers(0, 9000, (8, 8)).astype(np.uint16))):
        (src / folder).mkdir(parents=True)
        Image.fromarray(array).save(src / folder / "0001.png")
    (src / "train.txt").write_text("rgb/0001.png\tmasks/0001.png\tdepth/0001.png\n")
    return src


SYNTH = ("data", "synth", *SMALL)
CASES = [
    # (command before --out, what is at --out, extra flags, fragments of the message besides the path)
    pytest.param(SYNTH, user_dir, ["--overwrite"], ["not a fusionlab dataset", "no manifest.json",
                                                    "--overwrite replaces only a fusionlab dataset"],
                 id="synth-overwrite-onto-a-user-dir"),
    pytest.param(SYNTH, user_dir, [], ["not a fusionlab dataset"], id="synth-onto-a-user-dir"),
    pytest.param(SYNTH, user_file, ["--overwrite"], ["is not a directory", "a file is never replaced"],
                 id="synth-overwrite-onto-a-file"),
    pytest.param(SYNTH, user_link, ["--overwrite"], ["is a symbolic link"], id="synth-overwrite-onto-a-link"),
    pytest.param(SYNTH, dataset_with_notes, ["--overwrite"], ["not part of its dataset (notes.txt)"],
                 id="synth-overwrite-onto-a-dataset-with-foreign-files"),
    pytest.param(SYNTH, a_dataset, [], ["already exists", "pass --overwrite"],
                 id="synth-onto-a-dataset-without-overwrite"),
    pytest.param(("data", "convert", "nyudv2", nyu_source), user_dir, ["--overwrite"],
                 ["not a fusionlab dataset", "--overwrite replaces only a fusionlab dataset"],
                 id="convert-overwrite-onto-a-user-dir"),
    pytest.param(("data", "convert", "nyudv2", nyu_source), user_file, ["--overwrite"], ["is not a directory"],
                 id="convert-overwrite-onto-a-file"),
    pytest.param(("report", "--experiment", "E"), user_dir, [], ["not a fusionlab report", "pass --overwrite"],
                 id="report-onto-a-user-dir"),
    pytest.param(("report", "--experiment", "E"), user_file, ["--overwrite"], ["is not a directory"],
                 id="report-overwrite-onto-a-file"),
    pytest.param(("predict", "--model", "runs:/0123456789abcdef0123456789abcdef/model", "--input", "unused"),
                 user_file, ["--overwrite"], ["is not a directory"], id="predict-overwrite-onto-a-file"),
]


def snapshot(path: Path) -> dict[str, bytes]:
    if path.is_symlink():
        return {"link": str(path.readlink()).encode()}
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("command", "target", "flags", "fragments"), CASES)
def test_a_target_the_writer_did_not_create_is_refused_and_kept(cli, tmp_path, dataset_copy, command, target, flags,
                                                                 fragments):
    made = target(tmp_path, dataset_copy)
    before = snapshot(made)
    argv = [part(tmp_path) if callable(part) else part for part in command]
    result = cli(*argv, "--out", made, *flags)
    result.refused(str(made), *fragments)
    assert snapshot(made) == before
    assert not list(made.parent.glob(f".{made.name}.*"))  # refused before anything was staged
