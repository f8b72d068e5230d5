"""The Ray that fusionlab starts on this machine when no address is given, listening on the loopback interface only.

Ray 2.60's ``ray.init()`` takes the node's IP from its route to the outside (``_node_ip_address="127.0.0.1"`` is
resolved back to that IP), and with it the GCS, the raylet (node manager and object manager), every worker's gRPC
server and the dashboard agent listen on all interfaces (``::`` / ``0.0.0.0``); there is no bind-address setting.
Where the node IP is loopback, every one of them binds 127.0.0.1: Ray's single-machine mode (its default on macOS and
Windows), which ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` selects. Ray reads that variable once, at import, into
``ray_constants.ENABLE_RAY_CLUSTER`` (fusionlab has imported Ray by then), so both are set while ``ray.init`` starts
the node; the processes it starts inherit the variable. Token authentication stays as Ray sets it (on for a new
local cluster unless ``RAY_AUTH_MODE`` says otherwise).
"""

from __future__ import annotations

import os
from typing import Any

from fusionlab.errors import FusionlabError

LOOPBACK = "127.0.0.1"
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Every Ray process fusionlab trains in (a local Ray's, from its start; a cluster's, from ~/fusionlab.env in
# cluster/*.yaml). Ray Train's controller polls its workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (default 2 s), and
# a worker's ray.train.report waits for the next poll: an epoch under 2 s took 2 s, and every epoch up to one poll
# longer (bench/ingest_memory.py measured a 1.35 s epoch at 2.01 s on Ray; at 0.5 s, 1.39 s).
RAY_PROCESS_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}

_started_nodes: set[str] = set()  # the head node of each Ray this process started


def started_here() -> bool:
    """Whether the Ray this process is connected to is one ``init_local_ray`` started: this machine alone, whose
    resources are all there will be (a cluster reached by address may add nodes later: an autoscaler)."""
    import ray

    if not ray.is_initialized():
        return False
    return ray.get_runtime_context().get_node_id() in _started_nodes


def init_local_ray(**kwargs: Any) -> None:
    """``ray.init(**kwargs)`` for a new single-machine Ray bound to 127.0.0.1; refuses to go on if Ray took another
    IP."""
    import ray
    from ray._private import ray_constants

    for name, value in RAY_PROCESS_ENV.items():  # the processes ray.init starts inherit it; a user's value stays
        os.environ.setdefault(name, value)
    saved_env, saved_flag = os.environ.get(SINGLE_MACHINE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(_node_ip_address=LOOPBACK, dashboard_host=LOOPBACK, **kwargs)
    finally:  # once started, the node answers get_node_ip_address itself; a later ray.init(address=...) is unchanged
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = saved_env
    _started_nodes.add(ray.get_runtime_context().get_node_id())
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:
        ray.shutdown()
        raise FusionlabError(f"the local Ray took node IP {node_ip}, not {LOOPBACK}, so it would listen on every "
                             f"interface; start one yourself (`ray start --head --node-ip-address={LOOPBACK}`) and "
                             f"pass its address (--address or RAY_ADDRESS)")
