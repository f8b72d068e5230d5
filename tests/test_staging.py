"""Staging directories (``fusionlab.staging``): a dead writer's debris is swept by the next write into the same parent,
with a message; a live writer's is kept; SIGTERM of a real writer process leaves nothing behind."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fusionlab.data.synthetic import write_synthetic

TINY = {"train": 2, "val": 1, "test": 1, "size": (16, 16)}


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def debris(parent: Path, target: str, pid: int, kind: str = "partial", host: str | None = None) -> Path:
    path = parent / f".{target}.{kind}-{host or socket.gethostname()}-{pid}-0123abcd"
    path.mkdir()
    (path / "train-00000.parquet").write_bytes(b"half a shard")
    return path


def test_a_dead_writers_staging_dir_is_swept_with_a_message_and_a_live_ones_is_kept(tmp_path, capsys):
    dead = debris(tmp_path, "ds", dead_pid())
    other_target = debris(tmp_path, "older-ds", dead_pid())  # any target in the same parent
    live = debris(tmp_path, "ds", os.getpid())
    elsewhere = debris(tmp_path, "ds", dead_pid(), host="another-host.example")  # its PID means nothing here
    write_synthetic(tmp_path / "ds", **TINY)
    assert not dead.exists() and not other_target.exists()
    assert live.is_dir() and elsewhere.is_dir()
    message = " ".join(capsys.readouterr().err.split())
    assert f"removed {dead}" in message and f"removed {other_target}" in message
    assert "no longer running" in message and str(live) not in message
    assert (tmp_path / "ds" / "manifest.json").is_file()


def test_a_swap_killed_half_way_is_restored_not_removed_and_a_finished_ones_leftover_removed(tmp_path, capsys):
    retired = debris(tmp_path, "ds", dead_pid(), kind="old")  # "ds" was renamed aside, the new one never arrived
    (tmp_path / "done").mkdir()
    replaced = debris(tmp_path, "done", dead_pid(), kind="old")  # the swap finished: only the removal was left
    write_synthetic(tmp_path / "other", **TINY)
    assert not retired.exists() and not replaced.exists()
    assert (tmp_path / "ds" / "train-00000.parquet").read_bytes() == b"half a shard"
    message = " ".join(capsys.readouterr().err.split())
    assert f"restored {tmp_path / 'ds'}" in message and f"removed {replaced}: the replaced previous version" in message


def wait_for(pattern: str, parent: Path, process: subprocess.Popen, seconds: float = 120) -> list[Path]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = list(parent.glob(pattern))
        if found:
            return found
        if process.poll() is not None:
            pytest.fail(f"the writer ended (rc {process.returncode}) before its staging dir appeared: "
                        f"{process.communicate()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"no {pattern} in {parent} after {seconds} s")


def terminate(process: subprocess.Popen) -> int:
    os.kill(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def test_sigterm_of_data_synth_leaves_no_staging_dir(tmp_path):
    out = tmp_path / "synth"
    synth = subprocess.Popen([sys.executable, "-m", "fusionlab.cli", "data", "synth", "--out", str(out),
                              "--train", "100000", "--size", "32x32"],  # far more than it has time to write
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(".synth.partial-*", tmp_path, synth)
    assert terminate(synth) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


PREDICT_WRITER = textwrap.dedent("""
    import os, signal, sys, time
    import torch
    from fusionlab.inference.outputs import ImageWriter
    with ImageWriter(sys.argv[1]) as writer:
        writer.write("a", "a.png", torch.zeros(3, 8, 8))
        print("written", flush=True)
        time.sleep(120)
""")


def test_sigterm_of_predicts_output_writer_leaves_no_staging_dir(tmp_path):
    out = tmp_path / "predictions"
    writer = subprocess.Popen([sys.executable, "-c", PREDICT_WRITER, str(out)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "written\n", writer.communicate()
    wait_for(".predictions.partial-*", tmp_path, writer)
    assert terminate(writer) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_the_sigterm_handler_is_restored_after_a_write(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    write_synthetic(tmp_path / "ds", **TINY)
    assert signal.getsignal(signal.SIGTERM) is before


def test_what_a_sigkilled_data_synth_leaves_is_swept_by_the_next_write(tmp_path):
    out = tmp_path / "synth"
    argv = [sys.executable, "-m", "fusionlab.cli", "data", "synth", "--out", str(out), "--size", "16x16"]
    synth = subprocess.Popen([*argv, "--train", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    (left,) = wait_for(".synth.partial-*", tmp_path, synth)
    synth.kill()  # SIGKILL: no cleanup can run
    synth.wait(timeout=60)
    assert left.is_dir()
    again = subprocess.run([*argv, "--train", "2", "--val", "1", "--test", "1"], capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"removed {left}" in " ".join(again.stderr.split())
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]
