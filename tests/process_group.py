"""Subprocesses a test starts in a process group of their own, and stopped by that group's id: the driver and every
Ray process it started (gcs, raylet, workers stay in its group), never anything found by name."""

import os
import signal
import subprocess


def run_in_own_group(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(..., capture_output=True, text=True)`` in a new session; whatever it leaves is killed."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, **kwargs)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        kill_group(process)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process group ``process`` leads (started with ``start_new_session=True``), then reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # the whole group has exited
        pass
    process.wait()
