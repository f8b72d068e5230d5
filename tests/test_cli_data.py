"""`fusionlab data synth / inspect`, run as a user runs them."""

import json
import re
import subprocess
import sys

from fusionlab.cli import main


def split_rows(text: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^\W*(train|val|test)\W+(\d+)\W", text, re.M)}


def test_synth_then_inspect_verify(tmp_path, capsys):
    out = tmp_path / "synth"
    args = ["--train", "64", "--val", "16", "--test", "16", "--size", "120x160", "--seed", "0"]
    assert main(["data", "synth", "--out", str(out), *args]) == 0
    capsys.readouterr()
    result = subprocess.run([sys.executable, "-m", "fusionlab.cli", "data", "inspect", str(out), "--verify"],
                            capture_output=True, text=True, check=True)
    assert split_rows(result.stdout) == {"train": 64, "val": 16, "test": 16}
    assert "verified" in result.stdout and "120x160" in result.stdout

    again = tmp_path / "again"
    assert main(["data", "synth", "--out", str(again), *args]) == 0
    first, second = (json.loads((d / "manifest.json").read_text()) for d in (out, again))
    assert first["splits"] == second["splits"], "the same seed gives identical shards (same sha256)"


def test_inspect_reports_damage_as_an_error(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--train", "4", "--val", "2", "--test", "2",
                 "--size", "32x48"]) == 0
    shard = next(out.glob("train-*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    capsys.readouterr()
    assert main(["data", "inspect", str(out), "--verify"]) == 1
    assert "checksum mismatch" in capsys.readouterr().out
    assert main(["data", "inspect", str(tmp_path / "missing")]) == 1
    assert "dataset directory not found" in capsys.readouterr().out


def test_synth_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "synth"
    small = ["--train", "2", "--val", "1", "--test", "1", "--size", "32x32"]
    assert main(["data", "synth", "--out", str(out), *small]) == 0
    assert main(["data", "synth", "--out", str(out), *small]) == 1
    assert "already exists" in capsys.readouterr().out
