"""The ``search`` section ``fusionlab tune`` reads: the searched space, the metric, the scheduler."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from fusionlab.names import name_problem

from .types import Float, Int, Section


class ParameterSpace(Section):
    """One searched parameter: ``loguniform``/``uniform`` over [low, high], ``int`` range, or ``choice`` of values."""

    type: Literal["loguniform", "uniform", "int", "choice"]
    low: Float | None = None
    high: Float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ParameterSpace:
        if self.type == "choice":
            if not self.values:
                raise ValueError("a choice needs a non-empty 'values' list")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"{self.type} needs low < high, got low={self.low}, high={self.high}")
        elif self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low}")
        return self

    def probes(self) -> list[tuple[str, Any]]:
        """The values that must each make a valid config: every choice, both ends of a range (field limits are
        bounds, so a range whose ends pass passes inside)."""
        if self.type == "choice":
            return [("value", value) for value in self.values or []]
        if self.type == "int":
            return [("low", int(self.low)), ("high", int(self.high))]
        return [("low", self.low), ("high", self.high)]


class SchedulerConfig(Section):
    type: Literal["asha", "none"] = "asha"
    grace_period: Int = Field(1, ge=1)  # epochs every trial runs before it can be stopped
    reduction_factor: Float = Field(2, gt=1)


class SearchConfig(Section):
    """``fusionlab tune``: Optuna TPE over dotted config keys, early stopping with ASHA on ``metric``."""

    space: dict[str, ParameterSpace]
    metric: str = "val/miou"
    mode: Literal["max", "min"] = "max"
    num_samples: Int = Field(8, ge=1)
    max_concurrent_trials: Int = Field(1, ge=1)
    scheduler: SchedulerConfig = SchedulerConfig()
    seed: Int = 0
    time_budget_s: Float | None = Field(None, gt=0)
    # The sweep's name: its folder WORKDIR/sweeps/<name>, Tune's experiment and the MLflow parent run; a name, not a
    # path (fusionlab/names.py). Default: from the model, the data folder and the seed.
    name: str | None = None

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str | None) -> str | None:
        problem = None if value is None else name_problem(value)
        if problem:
            raise ValueError(problem)
        return value


