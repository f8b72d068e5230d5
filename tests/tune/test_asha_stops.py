"""What lets the trials after an ASHA stop train: a sweep's local Ray has exactly the CPUs its trials need (no
headroom for a leaked placement group), and the trial driver releases the groups a stopped trial's Train run left.

End to end (a sweep whose second trial ASHA stops on exactly those CPUs, with no dashboard, the third training after
it): tests/tune/test_sweep.py.
"""

import math
import os
import time
from pathlib import Path

from fusionlab.config import Config


def sweep_tree(data: Path) -> dict:
    lr = {"type": "loguniform", "low": 1e-6, "high": 1e-1}
    return {
        "data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [48, 64], "scale_range": [0.9, 1.1]},
        "model": {"name": "cen", "backbone": "resnet_mini"},
        "train": {"epochs": 2, "batch_size": 4, "optimizer": "sgd", "lr_encoder": 1e-3, "lr_decoder": 1e-3},
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
