"""A sweep whose trials ASHA stops, on exactly the CPUs its trials need (no headroom for a leaked placement group).

A stopped trial's Train run leaves its placement group behind (fusionlab/train/placement.py); unless the trial driver
releases it, the next trial's Ray Data tasks never get a CPU and the sweep hangs. The Ray here has no dashboard, so
Ray Train's own PlacementGroupCleaner cannot see the stopped controller die: only fusionlab's release frees the CPU.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fusionlab.config import Config
from fusionlab.data.synthetic import write_synthetic
from process_group import run_in_own_group

EPOCHS = 2

# Run in a subprocess of its own process group: a hang is bounded by the timeout, and whatever Ray it started is
# killed with the group. One trial at a time: 1 worker x 1 CPU + 1 CPU for Ray Data = 2 logical CPUs.
SWEEP = """
import json, sys
from fusionlab.config import parse_config
from fusionlab.train.local_ray import init_local_ray
from fusionlab.tune.sweep import DRIVER_RESOURCE, start_sweep

config = parse_config(json.loads(sys.argv[1]), origin="test")
init_local_ray(num_cpus=2, resources={DRIVER_RESOURCE: 1}, include_dashboard=False, _temp_dir=sys.argv[3])
results, _ = start_sweep(config, sys.argv[2])
trials = []
for result in results:
    history = result.metrics_dataframe
    trials.append({"trial_id": result.metrics["trial_id"], "epochs": int(history["training_iteration"].max()),
                   "first_report": float(history["timestamp"].min()),
                   "last_report": float(history["timestamp"].max()), "error": repr(result.error)})
print("TRIALS " + json.dumps(trials))
"""


def sweep_tree(data: Path) -> dict:
    # train/loss is continuous (no ties at a rung) and the learning rates span five decades, so the seeded samples
    # differ clearly: the second trial is worse than the first at epoch 1 and ASHA stops it there.
    lr = {"type": "loguniform", "low": 1e-6, "high": 1e-1}
    return {
        "data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [48, 64], "scale_range": [0.9, 1.1]},
        "model": {"name": "cen", "backbone": "resnet_mini"},
        "train": {"epochs": EPOCHS, "batch_size": 4, "optimizer": "sgd", "lr_encoder": 1e-3, "lr_decoder": 1e-3},
        "resources": {"num_workers": 1},
        "tracking": {"experiment": "asha-stops"},
        "search": {"space": {"train.lr_encoder": lr, "train.lr_decoder": lr}, "metric": "train/loss", "mode": "min",
                   "num_samples": 3, "seed": 3, "name": "asha-stops",
                   "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2}},
    }


def test_ensure_tune_ray_asks_for_no_headroom(monkeypatch, tmp_path):
    """Per concurrent trial its workers' CPUs and one for Ray Data; nothing kept back for a stopped trial's group."""
    import ray

    import fusionlab.train.local_ray
    from fusionlab.tune import sweep

    tree = sweep_tree(tmp_path)
    tree["resources"].update(num_workers=2, cpus_per_worker=1.5)
    tree["search"]["max_concurrent_trials"] = 3
    asked = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    monkeypatch.setattr(fusionlab.train.local_ray, "init_local_ray", lambda **kwargs: asked.update(kwargs))
    sweep.ensure_tune_ray(Config.model_validate(tree), address=None)  # no dataset needed
    assert asked == {"num_cpus": 3 * (math.ceil(2 * 1.5) + 1), "resources": {sweep.DRIVER_RESOURCE: 3}}


def test_only_the_groups_of_dead_creator_actors_are_released(ray_local):
    """A group made by an actor that died goes; one made by a live actor, or by the driver (Tune's), stays."""
    ray = ray_local
    from ray.util.placement_group import PlacementGroup, placement_group, placement_group_table, remove_placement_group

    from fusionlab.train.placement import orphaned_placement_groups, release_orphaned_placement_groups

    @ray.remote(num_cpus=0)
    class Creator:
        def make(self) -> str:
            group = placement_group([{"CPU": 0.5}])
            ray.get(group.ready())
            return group.id.hex()

    def state(group_id: str) -> str:
        return placement_group_table(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id))))["state"]

    driver_group = placement_group([{"CPU": 0.5}])
    ray.get(driver_group.ready())
    live, dying = Creator.remote(), Creator.remote()
    live_id, dead_id = ray.get([live.make.remote(), dying.make.remote()])
    try:
        ray.kill(dying)
        deadline = time.time() + 30  # the GCS marks the creator dead once it has seen the actor die
        while dead_id not in orphaned_placement_groups() and time.time() < deadline:
            time.sleep(0.2)
        assert release_orphaned_placement_groups() == [dead_id]
        deadline = time.time() + 30
        while state(dead_id) != "REMOVED" and time.time() < deadline:
            time.sleep(0.2)
        assert state(dead_id) == "REMOVED"
        assert state(live_id) == state(driver_group.id.hex()) == "CREATED"
        assert release_orphaned_placement_groups() == []
    finally:
        ray.kill(live)
        for group_id in (live_id, driver_group.id.hex()):
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id))))


@pytest.mark.slow
@pytest.mark.ray_experiment
def test_trials_after_an_asha_stop_get_the_stopped_trials_cpus(tmp_path):
    data = tmp_path / "synthetic"
    write_synthetic(data, train=16, val=8, test=4, size=(48, 64), seed=0)
    ray_tmp = Path(f"/tmp/fla-{os.getpid()}")  # Ray's socket paths are limited in length
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}
    try:
        result = run_in_own_group([sys.executable, "-c", SWEEP, json.dumps(sweep_tree(data)), str(tmp_path / "runs"),
                                   str(ray_tmp)], timeout=900, env=env)
    except subprocess.TimeoutExpired as hung:
        partial = hung.stdout.decode() if isinstance(hung.stdout, bytes) else hung.stdout or ""
        pytest.fail(f"the sweep did not end in {hung.timeout:.0f} s (did a stopped trial keep its CPU?): "
                    f"{partial[-3000:]}")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith("TRIALS ")]
    trials = json.loads(line.removeprefix("TRIALS "))
    assert len(trials) == 3 and all(trial["error"] == "None" for trial in trials), trials
    stopped = [trial for trial in trials if trial["epochs"] < EPOCHS]
    assert stopped, f"ASHA stopped no trial: {trials}"
    after = [trial for trial in trials for stop in stopped if trial["first_report"] > stop["last_report"]]
    assert after, f"no trial trained after a stopped one: {trials}"
    # In MLflow a stopped trial is KILLED and marked stopped early, never FAILED: its trial driver may see its Train
    # controller die (ActorDiedError) before Tune ends it, which is the stop, not an error.
    from mlflow.tracking import MlflowClient

    from fusionlab.tracking import default_tracking_uri

    client = MlflowClient(default_tracking_uri(tmp_path / "runs"))
    runs = client.search_runs([client.get_experiment_by_name("asha-stops").experiment_id])
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert len(children) == 3
    killed = [run for run in children if run.info.status == "KILLED"]
    assert len(killed) == len(stopped) and {run.info.status for run in children} <= {"FINISHED", "KILLED"}, \
        [(run.info.run_name, run.info.status, run.data.tags.get("fusionlab.error")) for run in children]
    for run in killed:
        assert run.data.tags["fusionlab.stopped_early"] == "true" and "fusionlab.error" not in run.data.tags
