"""Release the placement group of a Train run whose controller died with its Tune trial (a trial ASHA stopped).

Ray removes a placement group by itself only once both the job and the actor that created it are dead. A Train V2
run's group is created by its controller actor, which dies with the trial driver that Tune stops, while the sweep's
job lives on. Ray Train 2.60 leaves the removal to a detached ``PlacementGroupCleaner`` per run, which asks the State
API whether the controller is alive with no address: it finds the cluster through ``RAY_ADDRESS``, the address file
``ray start`` writes, or the one ``gcs_server`` on the machine. For a local ``ray.init()`` cluster with another Ray
running on the same machine it gets "Found multiple active Ray instances" (a ConnectionError its monitor thread does
not catch, so the thread ends), and without the dashboard it never learns that the controller died. Either way the
group keeps its CPUs until the sweep ends, and the next trial's Ray Data tasks wait for a CPU forever.

The GCS records on each group whether its creator actor is dead; a group of this job, not detached, created by an
actor that is dead, is an orphan, and is removed here (what Ray does once the job is dead as well).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

logger = logging.getLogger(__name__)


def orphaned_placement_groups() -> list[str]:
    """Hex ids of the live placement groups of this job whose creator actor is dead."""
    import ray
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    job = ray.get_runtime_context().get_job_id()
    nil_actor = ray.ActorID.nil().binary()  # a group the driver created (Tune's own) has no creator actor
    table = gcs_pb2.PlacementGroupTableData
    orphans = []
    for raw in state._connect_and_get_accessor().get_placement_group_table():  # the table with its creator fields
        group = table.FromString(raw)
        if (group.creator_job_id.hex() == job and group.creator_actor_id != nil_actor and group.creator_actor_dead
                and not group.is_detached and group.state != table.REMOVED):
            orphans.append(group.placement_group_id.hex())
    return orphans


def release_orphaned_placement_groups() -> list[str]:
    """Remove this job's orphaned placement groups (see the module docstring); returns their hex ids."""
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    orphans = orphaned_placement_groups()
    for group_id in orphans:
        remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id))))
        logger.info("released placement group %s: the actor that created it is dead", group_id)
    return orphans


@contextlib.contextmanager
def releasing_orphaned_placement_groups(interval_s: float = 1.0) -> Iterator[None]:
    """Release orphaned placement groups now and every ``interval_s`` until the block ends: a trial driver that
    starts while the stopped trial's controller is still being killed releases its group a moment later."""
    stop = threading.Event()

    def sweep() -> None:
        while True:
            try:
                release_orphaned_placement_groups()
            except Exception as error:  # a missed round is retried; the trial must not fail for it
                logger.warning("could not release orphaned placement groups: %s", error)
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=sweep, name="fusionlab-release-placement-groups", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval_s + 5)
