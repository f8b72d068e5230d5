"""Which training failures Ray Train may retry: a lost node or worker yes, the user's own error no.

Ray Train 2.60 retries every worker-group error up to ``FailureConfig(max_failures)``: a label outside the classes,
a config refused on resume or a diverged loss would be retried three times (a minute each) before failing with the
same message. Errors that are the user's to fix (``FusionlabError``, ``DatasetError``, ``ConfigError``) happen again
on every attempt, so the policy below raises them at once; anything else (a killed worker, a lost node, an
out-of-memory) is left to Ray's default policy.
"""

from __future__ import annotations

import logging
import traceback

from fusionlab.config import ConfigError
from fusionlab.data import DatasetError
from fusionlab.errors import FusionlabError

DETERMINISTIC = (FusionlabError, DatasetError, ConfigError)

logger = logging.getLogger(__name__)


def worker_cause(error: BaseException) -> BaseException:
    """The exception a worker raised, unwrapped from Ray Train's ``UserExceptionWithTraceback`` and Ray's
    ``RayTaskError`` (a Ray Data task that raised it: its ``cause``)."""
    for _ in range(8):  # wrappers of wrappers, never a cycle
        inner = getattr(error, "_base_exc", None) or getattr(error, "cause", None)
        if not isinstance(inner, BaseException) or inner is error:
            return error
        error = inner
    return error


def cause_and_traceback(error: BaseException) -> tuple[BaseException, str]:
    """The exception behind ``error`` and its traceback, as the run's error tag and ``error.txt`` record them
    (``tracking.lifecycle.mark_ended``): a Ray Train failure carries each worker's exception (``worker_failures``,
    wrapped with the worker's traceback as text)."""
    failures = list((getattr(error, "worker_failures", None) or {}).values())
    cause = worker_cause(failures[0] if failures else error)
    if cause is not error:
        return cause, str(error)
    return error, "".join(traceback.format_exception(type(error), error, error.__traceback__))


def deterministic_cause(error: BaseException) -> BaseException | None:
    """The user's error behind a Ray Train failure (any worker's), or None for a retryable one."""
    if isinstance(worker_cause(error), DETERMINISTIC):
        return worker_cause(error)
    for failure in (getattr(error, "worker_failures", None) or {}).values():
        cause = worker_cause(failure)
        if isinstance(cause, DETERMINISTIC):
            return cause
    return None


def install_failure_policy() -> bool:
    """Make Ray Train raise deterministic errors without retrying them; False (logged) where this Ray lacks the hook,
    which then retries them as before."""
    try:
        from ray.train.v2._internal.execution.failure_handling import DefaultFailurePolicy, FailureDecision
        from ray.train.v2.api import data_parallel_trainer
    except ImportError as error:
        logger.warning("deterministic training errors will be retried: this Ray has no Train V2 failure policy "
                       "hook (%s)", error)
        return False
    if getattr(data_parallel_trainer.create_failure_policy, "fusionlab", False):
        return True

    class RaiseUserErrors(DefaultFailurePolicy):
        def make_decision(self, training_failed_error):
            if deterministic_cause(training_failed_error) is not None:
                return FailureDecision.RAISE
            return super().make_decision(training_failed_error)

    def create_failure_policy(failure_config):
        return RaiseUserErrors(failure_config)

    create_failure_policy.fusionlab = True
    data_parallel_trainer.create_failure_policy = create_failure_policy
    return True


def torn_down_by_tune(error: BaseException) -> bool:
    """Whether ``error`` is the Train run's controller dying because Tune removed its trial's placement group: Tune
    stopping the trial (ASHA, a finished experiment), whose actor ends next. Usually the actor is gone before its
    thread sees the error; when the thread sees it first, the run must end as on that path (its MLflow run left for
    the sweep's summary), not FAILED with an ``ActorDiedError`` that is no fault of the run."""
    try:
        from ray.exceptions import ActorDiedError
    except ImportError:
        return False
    # Ray's own exit detail is the only sign of why the actor died
    return isinstance(error, ActorDiedError) and "placement group was removed" in str(error)
