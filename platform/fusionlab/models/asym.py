"""AsymFusion's two parameter-free, asymmetric fusion operations (Wang et al., ACM MM 2020).

Both work on the stacked mid-width features ``[M*B, C, H, W]`` of a bottleneck. With ``groups`` G (reference 5) a
branch keeps its own first ``(G-1) * (C // G)`` channels; the pixel shift moves those kept channels, split into one
group per offset, by one offset each (reference: down, right, left, up), with zero fill.
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F

from .modal import split_modalities

# (dy, dx): +dy moves content down, +dx moves it right. The reference order: down, right, left, up.
REFERENCE_SHIFT_OFFSETS: tuple[tuple[int, int], ...] = ((1, 0), (0, 1), (0, -1), (-1, 0))
REFERENCE_SHUFFLE_GROUPS = 5


def kept_channels(channels: int, groups: int = REFERENCE_SHUFFLE_GROUPS) -> int:
    """How many of its own channels a branch keeps in the shuffle: ``(G-1) * (C // G)``."""
    return (groups - 1) * (channels // groups)


def channel_shuffle(x: torch.Tensor, num_modalities: int, keep: int) -> torch.Tensor:
    """Each branch keeps its first ``keep`` channels and takes the rest from the other branches.

    The taken channels (same indices) are split into M-1 contiguous chunks; chunk j of branch m comes from branch
    ``(m + 1 + j) % M``. For M = 2 this is the reference: each branch takes the other's remaining channels.
    """
    v = split_modalities(x, num_modalities)
    sources = num_modalities - 1
    rest = v.shape[2] - keep
    edges = [keep + rest * j // sources for j in range(sources + 1)]
    taken = [v[:, :, lo:hi].roll(-(j + 1), dims=0) for j, (lo, hi) in enumerate(pairwise(edges))]
    return torch.cat([v[:, :, :keep], *taken], dim=2).flatten(0, 1)


def shift2d(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move the content of ``x`` (``[..., H, W]``) by ``dy`` rows and ``dx`` columns, filling with zeros."""
    height, width = x.shape[-2:]
    padded = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top: top + height, left: left + width]


def pixel_shift(
    x: torch.Tensor, keep: int, offsets: tuple[tuple[int, int], ...] = REFERENCE_SHIFT_OFFSETS
) -> torch.Tensor:
    """Shift the first ``keep`` channels group-wise (one group per offset); the remaining channels are zero."""
    groups = x[:, :keep].tensor_split(len(offsets), dim=1)
    shifted = [shift2d(group, dy, dx) for group, (dy, dx) in zip(groups, offsets, strict=True)]
    rest = x.new_zeros(x.shape[0], x.shape[1] - keep, *x.shape[2:])
    return torch.cat([*shifted, rest], dim=1)
