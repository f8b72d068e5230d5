"""A Ray cluster on this machine in the shape of cluster/aws-gpu.yaml, for the end-to-end tests and the rehearsal: a
head with CPUs and the trial drivers' ``tune_driver`` resource but no training slot, and worker nodes with one
``slot`` each (a GPU's stand-in, asked for through ``resources.worker_resources``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def loopback_cluster(workers: tuple[str, ...] = ("node_a", "node_b"), head_cpus: int = 2, drivers: int = 4,
                     log_to_driver: bool = True) -> Iterator[tuple]:
    """``(cluster, {name: node}, temp_dir)``, this process connected to it; every node inherits this process's
    environment (as a cluster's nodes source ~/fusionlab.env). Shut down, its temp dir removed, at the end."""
    import ray
    from ray.cluster_utils import Cluster

    from fusionlab.train.local_ray import RAY_PROCESS_ENV

    for name, value in RAY_PROCESS_ENV.items():  # as ~/fusionlab.env sets it on a cluster's nodes (cluster/*.yaml)
        os.environ.setdefault(name, value)
    temp_dir = tempfile.mkdtemp(prefix="rc-", dir="/tmp")  # Ray's socket paths have a length limit
    # Cluster writes its address to $RAY_TMPDIR/ray/ray_current_cluster (default /tmp/ray, every local Ray's): this
    # cluster's own, under its temp dir.
    (Path(temp_dir) / "ray").mkdir()
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp_dir
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": head_cpus, "resources": {"tune_driver": drivers}, "include_dashboard": False,
        "temp_dir": temp_dir})
    try:
        nodes = {name: cluster.add_node(num_cpus=1, resources={"slot": 1, name: 1}) for name in workers}
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=log_to_driver)
        yield cluster, nodes, temp_dir
    finally:
        ray.shutdown()
        cluster.shutdown()
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
        shutil.rmtree(temp_dir, ignore_errors=True)


def running_cell_past_an_epoch(uri: str, experiment: str, at_once: int = 2) -> str | None:
    """A grid cell's run in the store at ``uri`` that has logged an epoch while ``at_once`` cells run (a node removed
    before then could leave one slot for the rest), by its run name; None until then, or while the store is busy or
    still being created."""
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'") if found else []
        cells = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
        if len(cells) < at_once:
            return None
        return next((run.info.run_name for run in cells if "train/loss" in run.data.metrics), None)
    except Exception:  # the store busy with the cells' writes: ask again
        return None


def wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


def train_worker_hosts(nodes: dict) -> set[str]:
    """Names of the nodes running a Ray Train worker: its process is a child of that node's raylet (no dashboard
    needed, unlike ``ray.util.state``)."""
    import psutil

    raylets = {node.all_processes["raylet"][0].process.pid: name for name, node in nodes.items()}
    hosts = set()
    for process in psutil.process_iter(["ppid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if cmdline.startswith("ray::RayTrainWorker") and process.info["ppid"] in raylets:
            hosts.add(raylets[process.info["ppid"]])
    return hosts


def remove_a_worker_node_when(ready, cluster, nodes: dict, seen: dict, timeout: float = 900) -> threading.Thread:
    """A started thread that waits for ``ready()`` (a bound on a hang, not a speed target: on a loaded 2-core machine
    a second cell's start and the first's epoch took more than 300 s), then removes the node hosting a Ray Train
    worker; ``seen`` gets ``node``, ``node_id`` and ``removed``, or ``error`` (for the test body to report)."""

    def remove():
        try:
            if wait_for(ready, timeout=timeout, step=0.5) is None:
                seen["error"] = "the moment to remove a node never came"
                return
            hosts = wait_for(lambda: train_worker_hosts(nodes), timeout=60)
            if not hosts:
                seen["error"] = "no Train worker found on a worker node"
                return
            name = sorted(hosts)[0]
            seen.update(node=name, node_id=nodes[name].node_id, at=time.time())
            cluster.remove_node(nodes[name], allow_graceful=False)
            seen["removed"] = True
        except Exception as error:  # reported by the test body
            seen["error"] = repr(error)

    thread = threading.Thread(target=remove, daemon=True)
    thread.start()
    return thread
