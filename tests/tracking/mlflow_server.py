"""A real `mlflow server` subprocess for tests: started on a free loopback port, always stopped by process group."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, body: dict | None = None, timeout: float = 30) -> tuple[int, str, bytes]:
    """GET (or POST ``body`` as JSON): status, content type and the raw body; HTTP errors are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type(), error.read()


def api(base_url: str, endpoint: str, body: dict | None = None) -> dict:
    """A REST call (``endpoint`` like ``runs/search``) that must succeed; its JSON answer."""
    status, _, payload = fetch(f"{base_url}/api/2.0/mlflow/{endpoint}", body)
    assert status == 200, f"{endpoint}: HTTP {status}: {payload[:500]!r}"
    return json.loads(payload)


def log_tail(log_path: Path, chars: int = 3000) -> str:
    return log_path.read_text(errors="replace")[-chars:] if log_path.exists() else "(no log)"


def stop_group(process: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM the process group of ``process`` (started with ``start_new_session``: a server's CLI and its workers),
    SIGKILL what outlives the grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 0)  # anyone left in the group?
                continue
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts_dir: Path, log_path: Path, startup_s: float = 240) -> Iterator[str]:
    """Serve ``backend_uri`` (UI + REST) on 127.0.0.1 with one worker and no job runner; yields the base URL.

    Experiments created by fusionlab carry ``file://`` artifact locations, which the server reads directly
    (``/get-artifact``); ``artifacts_dir`` is also where proxied (``mlflow-artifacts:``) uploads would land.
    The default security middleware stays on: its default allowed hosts include ``127.0.0.1:<port>``.
    """
    with mlflow_server_process(["--backend-store-uri", backend_uri,
                                "--artifacts-destination", Path(artifacts_dir).resolve().as_uri()],
                               log_path, cwd=artifacts_dir.parent, startup_s=startup_s) as (_, base_url):
        yield base_url


@contextlib.contextmanager
def mlflow_server_process(store_args: list[str], log_path: Path, cwd: Path, env: dict[str, str] | None = None,
                          startup_s: float = 240) -> Iterator[tuple[subprocess.Popen, str]]:
    """`mlflow server STORE_ARGS` on a free port of 127.0.0.1, one worker, no job runner, ``env`` added to this
    process's; yields the process and its base URL once /health answers, and stops it by its process group."""
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           **(env or {})}
    command = [sys.executable, "-m", "mlflow", "server", *store_args,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{log_tail(log_path)}")
            with contextlib.suppress(OSError):
                if fetch(f"{base_url}/health", timeout=2)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlflow server not healthy after {startup_s:.0f} s:\n{log_tail(log_path)}")
            time.sleep(0.5)
        yield process, base_url
    finally:
        stop_group(process)
