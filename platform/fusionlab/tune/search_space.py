"""The ``search`` section as Optuna distributions, and sampled values applied back onto a config tree."""

from __future__ import annotations

from typing import Any

import optuna

from fusionlab.config import ParameterSpace, SearchConfig, set_dotted


def distribution(space: ParameterSpace) -> optuna.distributions.BaseDistribution:
    if space.type == "loguniform":
        return optuna.distributions.FloatDistribution(space.low, space.high, log=True)
    if space.type == "uniform":
        return optuna.distributions.FloatDistribution(space.low, space.high)
    if space.type == "int":
        return optuna.distributions.IntDistribution(int(space.low), int(space.high))
    return optuna.distributions.CategoricalDistribution(space.values)


def optuna_space(search: SearchConfig) -> dict[str, optuna.distributions.BaseDistribution]:
    return {key: distribution(space) for key, space in search.space.items()}


def apply_sample(tree: dict[str, Any], sample: dict[str, Any]) -> dict[str, Any]:
    """A config tree with the sampled values set at their dotted keys."""
    for key, value in sample.items():
        tree = set_dotted(tree, key, value)
    return tree
