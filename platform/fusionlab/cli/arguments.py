"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse


def csv_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def scale_list(text: str) -> list[float]:
    """``0.5,1,1.5`` -> [0.5, 1.0, 1.5]: input scales, each in ``(0, MAX_SCALE]`` (``models/multiscale.py``)."""
    from fusionlab.models.multiscale import SCALE_BOUNDS, scales_problem

    try:
        scales = [float(item) for item in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers ({SCALE_BOUNDS}), got {text!r}") from None
    problem = scales_problem(scales)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}; got {text!r}")
    return scales
