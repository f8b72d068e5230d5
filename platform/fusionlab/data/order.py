"""The order a worker trains on in an epoch: one definition for the in-process and the Ray path."""

from __future__ import annotations

import numpy as np
import torch


def epoch_order(num_rows: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """Row indices (into the training split) that worker ``rank`` of ``world_size`` trains on in ``epoch``, in order.

    One permutation per (seed, epoch) — the one the in-process ``DataLoader(shuffle=True)`` drew from a generator
    seeded with ``seed * 1000 + epoch``, so runs logged before this order was shared replay unchanged — cut to a
    multiple of ``world_size`` and dealt out as ``DistributedSampler(drop_last=True)`` does (worker r takes
    positions r, r + N, ...): one worker sees the whole permutation, N workers disjoint parts of equal length (DDP
    needs the same number of steps on every worker).
    """
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    torch.empty((), dtype=torch.int64).random_(generator=generator)  # the DataLoader drew its base seed first
    order = torch.randperm(num_rows, generator=generator).numpy()
    return order[rank: num_rows // world_size * world_size: world_size]
