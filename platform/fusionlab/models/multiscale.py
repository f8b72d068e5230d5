"""Multi-scale and flip inference for a segmentation predictor: the logits of several input scales (and their
horizontal mirror images) averaged at the input's full resolution.

The published RGB-D tables mix single-scale figures with multi-scale ones (DeepLab's protocol: scales 0.5-1.75 and a
flip), so a figure is only comparable with one scored the same way. Each scale resizes every modality bilinearly
(``align_corners=False``); the predictor upsamples its logits to the size it was given, and those are resized
bilinearly to the full resolution and averaged (logits, not probabilities). The references (yikaiw/CEN,
yikaiw/AsymFusion) score single-scale only, so there is no reference behaviour here to match.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SINGLE_SCALE = (1.0,)
SINGLE_SCALE_LABEL = "single-scale"
# A run's multi-scale scores are logged as <split>_ms/<metric> (val_ms/miou), beside the single-scale <split>/<metric>.
MULTI_SCALE_SUFFIX = "_ms"


# The largest input scale: the published protocols go to 1.75 (DeepLab's 0.5-1.75); 4 leaves room for more while a
# scale's input (16x the pixels at 4) still fits where the model was evaluated at 1. A scale of 1e9 would ask torch
# for an input of ~1e20 pixels (its storage overflows).
MAX_SCALE = 4.0
SCALE_BOUNDS = f"each in (0, {MAX_SCALE:g}]: DeepLab's protocol is 0.5,0.75,1,1.25,1.5,1.75"


def scales_problem(scales: Sequence[float]) -> str | None:
    """Why ``scales`` are refused (empty, or one outside ``0 < s <= MAX_SCALE``: NaN and inf included), or None."""
    values = list(scales)
    if not values:
        return "expected one or more scales"
    bad = [scale for scale in values if not 0 < float(scale) <= MAX_SCALE]
    if bad:
        return f"scale {', '.join(f'{scale:g}' for scale in bad)} is out of bounds ({SCALE_BOUNDS})"
    return None


def check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    """``scales`` as a tuple, refused when empty or out of bounds (``scales_problem``; a ``ValueError`` naming the
    values)."""
    values = tuple(float(scale) for scale in scales)
    problem = scales_problem(values)
    if problem:
        raise ValueError(f"scales {list(scales)}: {problem}")
    return values


def is_single_scale(scales: Sequence[float], flip: bool) -> bool:
    return tuple(scales) == SINGLE_SCALE and not flip


def protocol_label(scales: Sequence[float], flip: bool) -> str:
    """How a figure was scored, as the report and the tags say it: ``single-scale`` or e.g.
    ``multi-scale 0.5,1,1.5 + flip``."""
    if is_single_scale(scales, flip):
        return SINGLE_SCALE_LABEL
    label = "multi-scale " + ",".join(f"{scale:g}" for scale in scales)
    return label + " + flip" if flip else label


class MultiScalePredictor(nn.Module):
    """``[B, M, C, H, W]`` -> logits ``[B, K, H, W]``: the mean of ``predictor``'s logits over ``scales`` (each input
    resized to ``round(H * s), round(W * s)``) and, with ``flip``, over their mirror images (flipped back)."""

    def __init__(self, predictor: nn.Module, scales: Sequence[float] = SINGLE_SCALE, flip: bool = False):
        super().__init__()
        self.predictor = predictor
        self.scales = check_scales(scales)
        self.flip = flip
        # what evaluate reads off a predictor
        for name in ("task", "modalities", "num_classes"):
            if hasattr(predictor, name):
                setattr(self, name, getattr(predictor, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        total, views = None, 0
        for scale in self.scales:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            scaled = x if size == (height, width) else resize_inputs(x, size)
            for mirrored in (False, True) if self.flip else (False,):
                logits = self.predictor(scaled.flip(-1) if mirrored else scaled)
                if mirrored:
                    logits = logits.flip(-1)
                if logits.shape[-2:] != (height, width):
                    logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
                total = logits if total is None else total + logits
                views += 1
        return total / views


def resize_inputs(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Every modality of ``[B, M, C, H, W]`` resized bilinearly to ``size``."""
    batch, modalities = x.shape[:2]
    flat = F.interpolate(x.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
    return flat.unflatten(0, (batch, modalities))
