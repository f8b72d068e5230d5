"""``fusionlab report --out``: an earlier report is replaced, anything else is refused (a file always; a directory of
someone else's unless ``--overwrite``), before anything is written."""

import pytest
from report_store import FixtureRun, scores, write_store

from fusionlab.cli import main
from fusionlab.tracking.report import REPORT_MARKER

RUNS = [FixtureRun("RGB only", "unimodal", 0, scores(0.30, 0.31), modality="rgb"),
        FixtureRun("Depth only", "unimodal", 0, scores(0.40, 0.41), modality="depth")]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("report-out")
    write_store(workdir, "E", RUNS)
    return workdir


def report(store, *argv: str) -> int:
    return main(["--workdir", str(store), "report", "--experiment", "E", *argv])


def test_a_directory_of_someone_elses_is_refused_and_kept(store, tmp_path, capsys):
    out = tmp_path / "x"
    out.mkdir()
    (out / "k.txt").write_text("a")
    assert report(store, "--out", str(out)) == 1
    message = " ".join(capsys.readouterr().out.split())
    assert str(out) in message and "not a fusionlab report" in message and "--overwrite" in message
    assert sorted(p.name for p in out.iterdir()) == ["k.txt"] and (out / "k.txt").read_text() == "a"
    assert [p.name for p in tmp_path.iterdir()] == ["x"]  # refused before anything was staged


def test_overwrite_replaces_a_directory_that_is_not_a_report(store, tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "k.txt").write_text("a")
    assert report(store, "--out", str(out), "--overwrite") == 0
    assert not (out / "k.txt").exists() and (out / "report.md").is_file()


def test_a_regular_file_is_never_replaced(store, tmp_path, capsys):
    out = tmp_path / "x"
    out.write_text("a")
    assert report(store, "--out", str(out), "--overwrite") == 1
    assert "x exists and is not a directory" in " ".join(capsys.readouterr().out.split())
    assert out.read_text() == "a"


def test_an_earlier_report_is_replaced_and_the_new_one_is_complete(store, tmp_path):
    out = tmp_path / "reports" / "E"
    assert report(store, "--out", str(out)) == 0
    assert (out / REPORT_MARKER).is_file()
    (out / "report.md").write_text("stale")
    assert report(store, "--out", str(out)) == 0
    assert "RGB only" in (out / "report.md").read_text() and (out / "report.csv").is_file()
    assert [p.name for p in out.parent.iterdir()] == ["E"]  # nothing staged or retired left beside it


def test_an_earlier_report_holding_other_files_is_refused(store, tmp_path, capsys):
    out = tmp_path / "r"
    assert report(store, "--out", str(out)) == 0
    (out / "notes.txt").write_text("mine")
    assert report(store, "--out", str(out)) == 1
    assert "also holds other files (notes.txt)" in " ".join(capsys.readouterr().out.split())
    assert (out / "notes.txt").read_text() == "mine"
