"""The Ray fusionlab starts itself (no --address) listens on the loopback interface only: GCS, raylet, workers, agents.

The node is started by ``fusionlab.train.driver.ensure_ray`` in a child interpreter (its own Ray, whatever this
session runs), which lists the listening sockets of every process under it and stops the node before it exits.
"""

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

pytestmark = pytest.mark.slow

PROBE = textwrap.dedent("""
    import json, os
    import ray
    import psutil  # Ray's own copy (ray/thirdparty_files), importable once ray is
    from fusionlab.config import Config
    from fusionlab.train.driver import ensure_ray

    ensure_ray(Config.model_validate({"data": {"path": "/nowhere"}}), None)
    try:
        ray.get(ray.remote(lambda: os.getpid()).remote())  # a worker process and its gRPC server
        sockets = []
        for process in psutil.Process().children(recursive=True):
            try:
                listening = [c for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
                name = process.name()
            except psutil.Error:  # gone meanwhile
                continue
            sockets += [{"pid": process.pid, "name": name, "ip": c.laddr.ip, "port": c.laddr.port}
                        for c in listening]
        print("SOCKETS " + json.dumps({"node_ip": ray.util.get_node_ip_address(), "sockets": sockets}))
    finally:
        ray.shutdown()
""")

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def test_local_ray_listens_on_loopback_only(monkeypatch):
    temp_dir = tempfile.mkdtemp(prefix="rayb-", dir="/tmp")  # short: Ray's socket paths have a length limit
    monkeypatch.setenv("RAY_TMPDIR", temp_dir)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    try:
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=240)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("SOCKETS ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    found = json.loads(lines[-1].removeprefix("SOCKETS "))
    names = {socket["name"] for socket in found["sockets"]}
    assert {"gcs_server", "raylet"} <= names, found  # the probe saw Ray's servers, so an empty list cannot pass
    exposed = [socket for socket in found["sockets"] if socket["ip"] not in LOOPBACK]
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert found["node_ip"] == "127.0.0.1"
