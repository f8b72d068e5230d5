"""Which failures Ray Train retries: the user's own error (through Ray's wrappers) is raised at once, a lost worker
is left to Ray's policy."""

import ray.exceptions
from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
from ray.train.v2._internal.execution.failure_handling import FailureDecision
from ray.train.v2.api import data_parallel_trainer
from ray.train.v2.api.exceptions import WorkerGroupError

from fusionlab.config import ConfigError
from fusionlab.data import DatasetError
from fusionlab.errors import TrainingDiverged
from fusionlab.models.pretrained import PretrainedWeightsError
from fusionlab.models.pretrained_release import PretrainedReleaseError
from fusionlab.train.failures import deterministic_cause, install_failure_policy


def worker_group_error(exception: BaseException) -> WorkerGroupError:
    return WorkerGroupError("rank 0 failed", {0: UserExceptionWithTraceback(exception, "Traceback ...")})


def test_the_users_error_is_found_through_rays_wrappers():
    bad_label = DatasetError("shard train-00000.parquet, sample 's001', label: value 9 is not a class (4 classes)")
    from_ray_data = ray.exceptions.RayTaskError("map_batches", "Traceback (ray data) ...", bad_label)
    assert deterministic_cause(worker_group_error(from_ray_data)) is bad_label
    diverged = TrainingDiverged("training loss was not finite")
    assert deterministic_cause(worker_group_error(diverged)) is diverged
    missing = PretrainedWeightsError("pretrained weights file not found: weights/mini.pth")
    assert deterministic_cause(worker_group_error(missing)) is missing  # a missing file stays missing
    other_release = PretrainedReleaseError("model.pretrained ... is torchvision resnet101 imagenet1k_v2")
    assert deterministic_cause(worker_group_error(other_release)) is other_release
    assert deterministic_cause(ConfigError("x")) is not None


def test_a_lost_worker_or_a_crash_is_not_the_users_error():
    assert deterministic_cause(worker_group_error(ray.exceptions.ActorDiedError())) is None
    assert deterministic_cause(worker_group_error(RuntimeError("CUDA out of memory"))) is None


def test_the_installed_policy_raises_user_errors_and_retries_the_rest():
    assert install_failure_policy()
    policy = data_parallel_trainer.create_failure_policy(ray.train.FailureConfig(max_failures=3))
    assert policy.make_decision(worker_group_error(DatasetError("bad label"))) == FailureDecision.RAISE
    missing = PretrainedWeightsError("pretrained weights file not found: weights/mini.pth")
    assert policy.make_decision(worker_group_error(missing)) == FailureDecision.RAISE  # not restarted 3 times
    assert policy.make_decision(worker_group_error(ray.exceptions.ActorDiedError())) == FailureDecision.RETRY


def controller_died(detail: str) -> ray.exceptions.ActorDiedError:
    """The error ``trainer.fit()`` raises when its TrainController's process ends, built as Ray builds it."""
    from ray.core.generated.common_pb2 import ActorDiedErrorContext

    return ray.exceptions.ActorDiedError(ActorDiedErrorContext(
        error_message=f"The actor is dead because its worker process has died. Worker exit type: "
                      f"INTENDED_SYSTEM_EXIT Worker exit detail: {detail}",
        class_name="TrainController", actor_id=bytes(16), pid=1))


def test_a_run_tune_stops_is_not_marked_failed_but_a_dead_controller_otherwise_is(monkeypatch):
    """ASHA stopping a trial removes its placement group, which kills the Train run's controller: the trial's thread
    may see that ActorDiedError before its actor is killed. The run is then left as a killed trial's is (for the
    sweep's summary); a controller that died for any other reason still ends the run FAILED."""
    from types import SimpleNamespace

    import pytest

    from fusionlab.train import driver
    from fusionlab.train.failures import torn_down_by_tune

    marked = []
    monkeypatch.setattr("fusionlab.tracking.lifecycle.mark_launch_ended",
                        lambda *args, **unwrapped: marked.append(args[-1]))
    config = SimpleNamespace(tracking=SimpleNamespace(experiment="sweep"), run_name=lambda: "sweep-asha-1")
    payload = {"tracking_uri": "sqlite:///unused.db", "launch": "launch-1"}
    stopped = controller_died("Destroying worker since its placement group was removed.")
    crashed = controller_died("Worker unexpectedly exits with a connection error code 2.")
    assert torn_down_by_tune(stopped) and not torn_down_by_tune(crashed)
    for error in (stopped, crashed):
        with pytest.raises(ray.exceptions.ActorDiedError), driver.ends_honestly(payload, config):
            raise error
    assert marked == [crashed]
