"""Hyperparameter search (Ray Tune + Optuna) and declarative benchmark grids."""
