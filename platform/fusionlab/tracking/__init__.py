"""Experiment tracking with MLflow: the only package that imports mlflow."""

from .runs import RunTracker, default_tracking_uri, ensure_experiment, load_model

__all__ = ["RunTracker", "default_tracking_uri", "ensure_experiment", "load_model"]
