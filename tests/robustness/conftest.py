"""The robustness tables: malformed input through the real CLI must exit non-zero with a message that names the
file, field or value, and never with a traceback.

Each area has its own module (``test_<area>.py``) with a table of cases; they share the ``cli`` fixture and the
tiny datasets here. ``cli`` runs ``fusionlab.cli.main`` in this process (no 5 s interpreter start per case): an
exception that escapes it is exactly the traceback a user would see, and fails the case.
"""

from __future__ import annotations

import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

from fusionlab.cli import main
from fusionlab.data.synthetic import write_synthetic


@dataclass
class CliResult:
    rc: int
    output: str

    def refused(self, *fragments: str) -> None:
        """Non-zero exit, no traceback, and every fragment (a path, field or value) in the message."""
        assert self.rc != 0, f"expected a refusal, got rc 0:\n{self.output}"
        assert "Traceback" not in self.output, self.output
        flat = " ".join(self.output.split())  # rich wraps long lines
        for fragment in fragments:
            assert fragment in flat, f"{fragment!r} not in the message:\n{self.output}"


@pytest.fixture
def cli(capsys, tmp_path, monkeypatch):
    """``cli(*argv)`` -> CliResult; ``--workdir`` defaults to a fresh directory under tmp_path."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("COLUMNS", "200")

    def run(*argv: str, workdir: Path | None = None) -> CliResult:
        args = ["--workdir", str(workdir or tmp_path / "runs"), *map(str, argv)]
        capsys.readouterr()
        try:
            rc = main(args)
        except SystemExit as exit_:  # argparse: usage and a message on stderr
            rc = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # what the user would see as a traceback
            captured = capsys.readouterr()
            return CliResult(-1, captured.out + captured.err + "Traceback (escaped main):\n" + traceback.format_exc())
        captured = capsys.readouterr()
        return CliResult(rc, captured.out + captured.err)

    return run


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """8/4/4 synthetic RGB-D scenes at 32x40: never modified (copy it with ``dataset_copy``)."""
    out = tmp_path_factory.mktemp("robustness") / "synthetic"
    write_synthetic(out, train=8, val=4, test=4, size=(32, 40), seed=0)
    return out


@pytest.fixture
def dataset_copy(tiny_synthetic, tmp_path) -> Path:
    """A private copy of the tiny dataset for a case to damage."""
    return Path(shutil.copytree(tiny_synthetic, tmp_path / "data"))
