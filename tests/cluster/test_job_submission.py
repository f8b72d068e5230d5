"""`ray job submit` of a grid (experiments/submit.py) to a real local Ray head with token auth, tracked in MLflow."""

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
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from fusionlab.data.synthetic import write_synthetic

pytestmark = [pytest.mark.slow, pytest.mark.ray_experiment]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def tiny_grid(data: Path) -> dict:
    return {
        "grid": {"name": "job-grid", "description": "a tiny cell submitted as a Ray job", "seeds": [0]},
        "base": {
            "data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [48, 64]},
            "model": {"backbone": "resnet_mini"},
            "train": {"epochs": 1, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3},
            "resources": {"num_workers": 1},
        },
        # One cell: what is proven is the submission and its tracking (grids of several cells: tests/tune/).
        "cells": [{"label": "CEN", "set": {"model.name": "cen"}}],
    }


def ray_pids(temp_dir: str) -> list[int]:
    """Processes of the head started in ``temp_dir`` (every Ray process names its session directory)."""
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, errors="replace").stdout
    return [int(line.split(None, 1)[0]) for line in ps.splitlines()
            if temp_dir in line and int(line.split(None, 1)[0]) != os.getpid()]


@pytest.fixture
def ray_head():
    """A `ray start --head --block` on loopback with token auth; its processes killed by PID afterwards."""
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
         f"--dashboard-agent-listen-port={agent}", "--num-cpus=4", f"--temp-dir={temp_dir}",
         '--resources={"tune_driver": 2}',  # the grid's trial drivers take it (as the cluster YAMLs' heads declare)
         "--include-dashboard=true", "--disable-usage-stats"],
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


def ray_cli(head: dict, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=head["env"], capture_output=True, text=True, timeout=timeout)


def wait_for_jobs_api(head: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        listed = ray_cli(head, "job", "list", "--address", head["address"])
        if listed.returncode == 0:
            return
        if head["process"].poll() is not None:
            pytest.fail(f"ray start --head exited: {Path(head['log']).read_text()}")
        assert time.monotonic() < deadline, f"the Jobs API did not come up: {listed.stdout}{listed.stderr}"
        time.sleep(1)


def test_grid_submitted_as_ray_job_is_tracked(tmp_path, ray_head):
    data = tmp_path / "data"
    write_synthetic(data, train=8, val=4, test=4, size=(48, 64), seed=0)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "grid.yaml").write_text(yaml.safe_dump(tiny_grid(data), sort_keys=False))
    shutil.copy(REPO / "experiments" / "submit.py", job_dir)  # as `ray submit` copies the script to the head
    workdir = tmp_path / "runs"
    wait_for_jobs_api(ray_head)

    wrong = dict(ray_head["env"], RAY_AUTH_TOKEN="0" * 64)
    refused = subprocess.run([str(BIN / "ray"), "job", "list", "--address", ray_head["address"]], env=wrong,
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0, "the head accepted a wrong token: token auth is off"

    submitted = ray_cli(ray_head, "job", "submit", "--address", ray_head["address"], "--working-dir", str(job_dir),
                        "--", sys.executable, "submit.py", "grid.yaml", "--workdir", str(workdir), timeout=240)
    output = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0 and "succeeded" in output, output
    assert "total: 1 runs" in output  # the dry-run table came first

    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    experiment = client.get_experiment_by_name("job-grid")
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if run.data.tags.get("fusionlab.kind") == "grid"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert [run.data.params["model.name"] for run in children] == ["cen"]
    for run in children:
        assert run.info.status == "FINISHED"
        assert {"val/miou", "test/miou"} <= set(run.data.metrics)
