"""Experiment tracking with MLflow: the only package that imports mlflow.

Its entry points load on first use, so that ``fusionlab.tracking.tags`` (the tag keys, read by train/ too) imports
without mlflow."""

from __future__ import annotations

from typing import Any

__all__ = ["RunTracker", "default_tracking_uri", "ensure_experiment", "load_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import runs

        return getattr(runs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
