"""A real `ray start --head` on loopback with token auth for the tests that submit Ray jobs; stopped by PID."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def ray_pids(temp_dir: str) -> list[int]:
    """Processes of the head started in ``temp_dir`` (every Ray process names its session directory)."""
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, errors="replace").stdout
    return [int(line.split(None, 1)[0]) for line in ps.splitlines()
            if temp_dir in line and int(line.split(None, 1)[0]) != os.getpid()]


@contextlib.contextmanager
def ray_head(num_cpus: int = 4, tune_drivers: int = 2) -> Iterator[dict]:
    """A `ray start --head --block` on loopback with token auth and the Jobs API; its processes killed by PID
    afterwards, and none may be left. Yields its ``address`` (the dashboard's, for `ray job`), the ``env`` a client
    needs (the token), the ``process`` and its ``log``."""
    temp_dir = tempfile.mkdtemp(prefix="rj-", dir="/tmp")  # short: Ray's socket paths have a length limit
    gcs, dashboard, client, agent = free_ports(4)
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    # Ray 2.60: a head that finds a token (env, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) requires it on every
    # connection. Pin both ends to a fresh token in the environment, whatever ~/.ray holds.
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0",
               MLFLOW_DISABLE_TELEMETRY="true", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    log = open(Path(temp_dir) / "head.log", "w")  # a file, not a pipe nobody reads: the head never blocks on it
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
         f"--dashboard-agent-listen-port={agent}", f"--num-cpus={num_cpus}", f"--temp-dir={temp_dir}",
         # the grid's trial drivers take it (as the cluster YAMLs' heads declare)
         f'--resources={{"tune_driver": {tune_drivers}}}', "--include-dashboard=true", "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield {"address": f"http://127.0.0.1:{dashboard}", "env": env, "process": head, "log": log.name}
    finally:
        # The head's own process group (start_new_session): `ray start --block`, gcs, raylet, dashboard, agents.
        # Not `ray stop`, which stops every Ray on the machine.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while head.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):  # gcs and `ray start --block` may take their time on SIGTERM
            os.killpg(head.pid, signal.SIGKILL)
        for pid in ray_pids(temp_dir):  # any that left the group: by PID (their command lines name temp_dir)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        head.wait(timeout=10)
        time.sleep(0.5)
        left = ray_pids(temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes left running: {left}"


def ray_cli(head: dict, *args: str, timeout: float = 30, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=env or head["env"], capture_output=True, text=True,
                          timeout=timeout)


def wait_for_jobs_api(head: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        listed = ray_cli(head, "job", "list", "--address", head["address"])
        if listed.returncode == 0:
            return
        if head["process"].poll() is not None:
            raise AssertionError(f"ray start --head exited: {Path(head['log']).read_text()}")
        assert time.monotonic() < deadline, f"the Jobs API did not come up: {listed.stdout}{listed.stderr}"
        time.sleep(1)


def refuses_a_wrong_token(head: dict) -> bool:
    wrong = dict(head["env"], RAY_AUTH_TOKEN="0" * 64)
    return ray_cli(head, "job", "list", "--address", head["address"], env=wrong).returncode != 0
