"""The two building blocks every fusion model shares.

Modalities travel stacked along the batch axis: a tensor ``[M*B, C, H, W]`` whose rows ``m*B:(m+1)*B`` belong to
modality ``m``. A shared convolution then runs once for all modalities, and only BatchNorm is per modality.
"""

from __future__ import annotations

import torch
from torch import nn


def split_modalities(x: torch.Tensor, num_modalities: int) -> torch.Tensor:
    """View ``[M*B, ...]`` as ``[M, B, ...]`` (no copy)."""
    return x.unflatten(0, (num_modalities, -1))


def mean_of_others(v: torch.Tensor) -> torch.Tensor:
    """For ``v`` of shape ``[M, ...]``, entry m of the result is the mean of ``v[m']`` over ``m' != m``.

    For M = 2 this is the other modality itself, copied exactly (no rounding through a sum).
    """
    num_modalities = v.shape[0]
    if num_modalities < 2:
        raise ValueError(f"mean_of_others needs at least 2 modalities, got {num_modalities}")
    if num_modalities == 2:
        return v.flip(0)
    return (v.sum(0, keepdim=True) - v) / (num_modalities - 1)


class SharedConv2d(nn.Conv2d):
    """A convolution whose weights all modalities share.

    It runs once on the stacked batch. ``loop_modalities`` switches to one call per modality (the reference
    implementations' execution) so benchmarks can compare both on the same weights.
    """

    def __init__(self, *args, num_modalities: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_modalities = num_modalities
        self.loop_modalities = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.loop_modalities and self.num_modalities > 1:
            parts = x.chunk(self.num_modalities)
            return torch.cat([self._conv_forward(part, self.weight, self.bias) for part in parts])
        return super().forward(x)


def set_modality_loop(model: nn.Module, enabled: bool) -> None:
    """Run every shared conv of ``model`` batched (default) or as a per-modality loop."""
    for module in model.modules():
        if isinstance(module, SharedConv2d):
            module.loop_modalities = enabled


class ModalBatchNorm2d(nn.Module):
    """One BatchNorm2d per modality, each applied to its own slice of the stacked batch.

    ``shared=True`` keeps a single BN used by every modality (the papers' shared-BN ablation); statistics are
    still computed per modality slice, as in the reference code.
    """

    def __init__(self, num_features: int, num_modalities: int, shared: bool = False):
        super().__init__()
        self.num_modalities = num_modalities
        self.shared = shared
        copies = 1 if shared else num_modalities
        self.bns = nn.ModuleList(nn.BatchNorm2d(num_features) for _ in range(copies))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_modalities == 1:
            return self.bns[0](x)
        parts = x.chunk(self.num_modalities)
        return torch.cat([self.bns[0 if self.shared else m](part) for m, part in enumerate(parts)])

    def gammas(self) -> torch.Tensor:
        """The scaling factors, ``[M, C]`` (one row per modality)."""
        weights = [bn.weight for bn in self.bns]
        if self.shared:
            weights = weights * self.num_modalities
        return torch.stack(weights)
