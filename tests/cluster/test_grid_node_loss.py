"""A grid on a three-node cluster: its cells train at once, one per slot, and survive losing a worker node (the one
end-to-end node-loss test of a Tune experiment: a sweep's trials run the same Train run).

A ``ray.cluster_utils.Cluster`` on this machine: a head with the ``tune_driver`` resource and CPUs for Ray Data
(never a training worker: those need a ``slot``), and two worker nodes with one ``slot`` and one CPU each (a slot
stands in for a GPU). The cells ask for the slot through ``resources.worker_resources``. Once a cell has logged an
epoch, a background thread removes the node hosting a training worker; the cell's Train run restarts its worker
group from its last checkpoint on the node left (``resources.max_failures``), in the same MLflow run.
"""

from __future__ import annotations

import json

import pytest

from loopback_cluster import loopback_cluster, remove_a_worker_node_when, running_cell_past_an_epoch
from tiny_grids import UNIMODAL_RGB, grid_runs, logged_epochs, write_grid

pytestmark = [pytest.mark.slow, pytest.mark.ray_experiment]

EPOCHS = 3


def most_at_once(intervals: list[tuple[int, int]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_grid_cells_run_at_once_and_survive_losing_a_worker_node(tmp_path, monkeypatch, no_ray_in_process):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    import ray

    from fusionlab.data.synthetic import write_synthetic
    from fusionlab.tracking import default_tracking_uri
    from fusionlab.tune.grid import load_grid
    from fusionlab.tune.grid_runner import run_grid

    data = tmp_path / "synthetic"
    write_synthetic(data, train=8, val=4, test=4, size=(48, 64), seed=0)
    # Two cells on two slots, at once; after a node goes, the cell that lost its worker waits for the one slot left.
    cells = [("RGB", UNIMODAL_RGB), ("CEN", {"model.name": "cen"})]
    grid = load_grid(write_grid(tmp_path / "grid.yaml", "cluster-grid", data, cells, base={
        "train": {"epochs": EPOCHS, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3},
        "resources": {"num_workers": 1, "cpus_per_worker": 1, "worker_resources": {"slot": 1},
                      "use_gpu": False}}))
    workdir = tmp_path / "runs"
    seen: dict = {}
    with loopback_cluster() as (cluster, nodes, _):
        uri = default_tracking_uri(workdir)
        watcher = remove_a_worker_node_when(lambda: running_cell_past_an_epoch(uri, "cluster-grid"), cluster, nodes,
                                            seen)
        outcome = run_grid(grid, workdir)
        watcher.join(timeout=30)
        alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}

    assert "error" not in seen, seen["error"]
    assert seen.get("removed") and seen["node_id"] not in alive, seen
    assert not outcome.failed, outcome.summary()

    client, parent, children = grid_runs(workdir, "cluster-grid")
    assert parent.info.status == "FINISHED"
    assert sorted(children) == ["cen-seed0", "rgb-seed0"], "one child per cell"
    for name, run in children.items():
        assert run.info.status == "FINISHED" and "test/miou" in run.data.metrics, name
        assert logged_epochs(client, run.info.run_id) == list(range(EPOCHS)), f"{name}: each epoch logged once"
    intervals = [(run.info.start_time, run.info.end_time) for run in children.values()]
    assert most_at_once(intervals) >= 2, f"the cells ran one at a time: {intervals}"
    restarted = [name for name, run in children.items() if int(run.data.tags["fusionlab.starts"]) > 1]
    assert restarted, "the removed node hosted a cell's worker, which started again elsewhere"
    # Tune, too, saw each epoch of every cell once: the restarted worker group continued from its checkpoint (a
    # restart from scratch would report epoch 0 again). A sweep's trials are the same Tune trials running the same
    # Train run (tune/sweep.py trial_fn, tune/grid_runner.py cell_trial), so this covers a sweep losing a node too.
    reports = {}
    for result_file in (workdir / "grids" / "cluster-grid").glob("launch-*/*/result.json"):
        lines = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        if lines:
            reports[lines[0]["config"]["cell"]] = [line["epoch"] for line in lines]
    assert reports == {name: list(range(EPOCHS)) for name in children}, reports
