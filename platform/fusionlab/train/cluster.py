"""What a launch decides from the Ray cluster it runs on, before any trial starts: whether the cells get GPUs, and
whether the tracking store can be shared by the cluster's nodes."""

from __future__ import annotations

from fusionlab.config import Config
from fusionlab.errors import FusionlabError

from .local_ray import started_here


def resolve_use_gpu(config: Config) -> Config:
    """``config`` with ``resources.use_gpu: auto`` decided: on a Ray this process started (this machine, all of it),
    whether it has a GPU; on a cluster reached by address, True if it offers GPUs now, else refused. An autoscaling
    cluster offers none until a training worker asks for one (its GPU node types start at 0 nodes and the head has
    CPUs only), so deciding from today's resources would train every cell on the head's CPUs."""
    if config.resources.use_gpu != "auto":
        return config
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    if not gpus and not started_here():
        raise FusionlabError(
            "resources.use_gpu is 'auto', and the Ray cluster offers no GPU now; on an autoscaling cluster GPU nodes "
            "start only once a worker asks for a GPU, so 'auto' would train on the head's CPUs. Set "
            "resources.use_gpu: true (train on GPU nodes) or false (train on CPUs), e.g. --set resources.use_gpu=true")
    resources = config.resources.model_copy(update={"use_gpu": bool(gpus)})
    return config.model_copy(update={"resources": resources})


def cluster_hosts() -> set[str]:
    """The addresses of the alive nodes' machines (several nodes of a loopback test cluster share one)."""
    import ray

    if not ray.is_initialized():
        return set()
    return {node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")}


def check_shared_store(uri: str) -> None:
    """Refuse an SQLite tracking store on a cluster of several machines: each node's workers would write their own
    copy of the file, or one file over NFS, whose locking SQLite does not trust."""
    if not uri.startswith("sqlite:"):
        return
    hosts = cluster_hosts()
    if len(hosts) > 1:
        raise FusionlabError(
            f"the tracking store {uri} is an SQLite file, and this Ray cluster spans {len(hosts)} machines whose "
            f"training workers all log to it: run an MLflow server on a database (docs/clusters.md) and pass its "
            f"URI (--tracking-uri or MLFLOW_TRACKING_URI)")
