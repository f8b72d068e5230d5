"""The repository needs nothing beside the clone: no tracked file points outside it, and the suite reads nothing there
(conftest.py's audit hook records every open inside OUTSIDE and fails the session)."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = REPO_ROOT.parent / "shared"  # conftest.py's OUTSIDE (not imported: tests/*/conftest.py share the name)
OUTSIDE_REFERENCE = "../" + OUTSIDE.name  # spelled in two parts so that this file does not contain it
PROBE = "FUSIONLAB_AUDIT_PROBE"


def _tracked_text_files():
    """Tracked files and the new ones about to be (untracked, not ignored), as they are in the working tree."""
    listing = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    names = subprocess.run(listing, cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in names.decode().split("\0"):
        path = REPO_ROOT / name
        if not name or not path.is_file():  # deleted in the working tree, not yet committed
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary (the golden .npz files, images)
            continue
        yield name, data.decode("utf-8", errors="replace")


def test_no_tracked_file_points_outside_the_clone():
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    found = [f"{name}:{number}: {line.strip()}"
             for name, text in _tracked_text_files()
             for number, line in enumerate(text.splitlines(), 1) if OUTSIDE_REFERENCE in line]
    assert not found, f"tracked files mention {OUTSIDE_REFERENCE}:\n" + "\n".join(found)


def test_the_golden_vectors_are_in_the_repository(golden_dir):
    assert golden_dir.is_relative_to(REPO_ROOT)
    assert sorted(path.name for path in golden_dir.glob("*.npz")) == [
        "asym_refinenet_m2.npz", "asym_shift_shuffle_m2.npz", "cen_exchange_m2.npz", "cen_refinenet_m2.npz"]
    assert (golden_dir / "README.md").is_file()


def test_the_audit_hook_records_an_open_outside(outside_opens):
    """Fails if pytest_configure no longer installs the hook. The file need not exist: the event comes first."""
    probe = OUTSIDE / "fusionlab-audit-probe.txt"
    before = len(outside_opens)
    with contextlib.suppress(OSError):
        open(probe).close()
    recorded = outside_opens[before:]
    del outside_opens[before:]  # made on purpose: it must not fail this session
    assert recorded == [os.path.realpath(probe)] or recorded == [str(probe)]


def test_the_audit_hook_ignores_the_repository(outside_opens):
    before = len(outside_opens)
    (REPO_ROOT / "pyproject.toml").read_bytes()
    assert outside_opens[before:] == []


@pytest.mark.skipif(PROBE not in os.environ, reason="run by test_an_open_outside_fails_the_session only")
def test_probe_opens_a_file_outside():
    with contextlib.suppress(OSError):
        open(OUTSIDE / "fusionlab-audit-probe.txt").close()


def test_an_open_outside_fails_the_session():
    """A pytest session whose one test opens a file outside passes that test, yet exits non-zero naming the file."""
    env = {**os.environ, PROBE: "1"}
    node = f"{__file__}::test_probe_opens_a_file_outside"
    result = subprocess.run([sys.executable, "-m", "pytest", node, "-n", "0", "-q", "-p", "no:cacheprovider"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert "1 passed" in output, output
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "fusionlab-audit-probe.txt" in output and "outside the repository" in output, output
