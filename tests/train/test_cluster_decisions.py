"""What a launch decides from the cluster before any trial starts (train/cluster.py): GPUs on an autoscaling cluster,
and an SQLite store refused when the cluster spans machines."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from train_configs import config_tree

import fusionlab.train.cluster as cluster
from fusionlab.errors import FusionlabError
from fusionlab.train.prepare import parse_config

REPO = Path(__file__).resolve().parents[2]


def config(small_synthetic, use_gpu):
    return parse_config(config_tree(small_synthetic, resources={"use_gpu": use_gpu}))


@pytest.fixture
def a_cluster(monkeypatch):
    """A Ray cluster reached by address whose resources and nodes the test sets (no Ray is started)."""
    import ray

    state = {"resources": {"CPU": 8.0, "tune_driver": 8.0}, "hosts": ["10.0.0.1"]}
    monkeypatch.setattr(cluster, "started_here", lambda: False)
    monkeypatch.setattr(ray, "cluster_resources", lambda: state["resources"])
    monkeypatch.setattr(ray, "nodes", lambda: [{"NodeManagerAddress": host, "Alive": True} for host in state["hosts"]]
                        + [{"NodeManagerAddress": "10.0.0.99", "Alive": False}])
    return state


def test_auto_is_refused_on_a_cluster_that_offers_no_gpu_yet(small_synthetic, a_cluster):
    # aws-gpu.yaml at launch: the head (CPUs, tune_driver) alone, its GPU node types at 0 nodes until asked for
    with pytest.raises(FusionlabError, match=r"resources.use_gpu is 'auto'.*autoscaling.*use_gpu: true"):
        cluster.resolve_use_gpu(config(small_synthetic, "auto"))


def test_auto_takes_the_gpus_a_cluster_offers_and_an_explicit_setting_is_kept(small_synthetic, a_cluster):
    a_cluster["resources"] = {"CPU": 12.0, "GPU": 1.0}
    assert cluster.resolve_use_gpu(config(small_synthetic, "auto")).resources.use_gpu is True
    a_cluster["resources"] = {"CPU": 8.0}
    assert cluster.resolve_use_gpu(config(small_synthetic, True)).resources.use_gpu is True
    assert cluster.resolve_use_gpu(config(small_synthetic, False)).resources.use_gpu is False


def test_auto_on_the_ray_fusionlab_started_is_this_machine(small_synthetic, ray_local):
    resolved = cluster.resolve_use_gpu(config(small_synthetic, "auto"))
    assert resolved.resources.use_gpu is bool(ray_local.cluster_resources().get("GPU", 0))
    assert resolved.model_dump(mode="json")["resources"]["use_gpu"] is resolved.resources.use_gpu  # what trials get


PAPER_EXPERIMENTS = sorted(path for path in (REPO / "experiments").glob("*.yaml") if "synthetic" not in path.stem)


def test_the_paper_experiments_are_found():
    assert {"nyudv2_refinenet", "nyudv2_tokenfusion", "nyudv2_cen_search"} <= {p.stem for p in PAPER_EXPERIMENTS}


@pytest.mark.parametrize("grid", PAPER_EXPERIMENTS, ids=lambda path: path.stem)
def test_the_paper_experiments_say_whether_they_use_gpus(grid):
    tree = yaml.safe_load(grid.read_text())
    resources = (tree.get("base") or tree).get("resources", {})
    assert resources.get("use_gpu") is True, f"{grid.name}: resources.use_gpu must be explicit"


def test_an_sqlite_store_is_refused_on_a_cluster_of_several_machines(a_cluster, tmp_path):
    sqlite = f"sqlite:///{tmp_path}/mlflow.db"
    cluster.check_shared_store(sqlite)  # one machine (its dead node does not count)
    a_cluster["hosts"] = ["10.0.0.1", "10.0.0.2"]
    with pytest.raises(FusionlabError, match=r"SQLite file, and this Ray cluster spans 2 machines.*MLflow server"):
        cluster.check_shared_store(sqlite)
    cluster.check_shared_store("postgresql://mlflow@db:5432/mlflow")
    cluster.check_shared_store("http://10.0.0.1:5000")


def test_a_loopback_cluster_is_one_machine(a_cluster, tmp_path):
    a_cluster["hosts"] = ["127.0.0.1", "127.0.0.1"]  # ray.cluster_utils.Cluster: every node on this machine
    cluster.check_shared_store(f"sqlite:///{tmp_path}/mlflow.db")
