"""The two building blocks every fusion model shares.

Modalities travel stacked along the batch axis: a tensor ``[M*B, C, H, W]`` whose rows ``m*B:(m+1)*B`` belong to
modality ``m``. A shared convolution then runs once for all modalities, and only the norm (BatchNorm, or InstanceNorm
in the translation generator) is per modality.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


class SharedByModalities:
    """Mixin for a layer whose weights all modalities share: it runs once on the stacked batch.

    ``loop_modalities`` switches to one call per modality (the reference implementations' execution) so benchmarks
    can compare both on the same weights.
    """

    def __init__(self, *args, num_modalities: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_modalities = num_modalities
        self.loop_modalities = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.loop_modalities and self.num_modalities > 1):
            return super().forward(x)
        parts = []
        for part in x.chunk(self.num_modalities):
            parts.append(super().forward(part))
        return torch.cat(parts)


class SharedConv2d(SharedByModalities, nn.Conv2d):
    """A convolution whose weights all modalities share (see ``SharedByModalities``)."""


class SharedConvTranspose2d(SharedByModalities, nn.ConvTranspose2d):
    """A transposed convolution whose weights all modalities share (see ``SharedByModalities``)."""


def set_modality_loop(model: nn.Module, enabled: bool) -> None:
    """Run every shared conv of ``model`` batched (default) or as a per-modality loop."""
    for module in model.modules():
        if isinstance(module, SharedByModalities):
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

    def modal_weights(self) -> list[nn.Parameter]:
        """The per-modality scaling-factor parameters, modality order (one when shared)."""
        return [bn.weight for bn in self.bns]


class ModalInstanceNorm2d(nn.Module):
    """One affine ``InstanceNorm2d`` per modality, each applied to its own slice of the stacked batch.

    Instance statistics are per sample, so the normalisation runs once on the whole stack and only the affine step is
    per modality (``[M, 1, C, 1, 1]`` broadcast): the same result as M calls, in one kernel. No running statistics:
    eval normalises with the instance's own statistics, as pix2pix does at test time.
    """

    def __init__(self, num_features: int, num_modalities: int, eps: float = 1e-5):
        super().__init__()
        self.num_modalities = num_modalities
        self.norms = nn.ModuleList(nn.InstanceNorm2d(num_features, eps=eps, affine=True) for _ in range(num_modalities))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_modalities == 1:
            return self.norms[0](x)
        channels = x.shape[1]
        normalised = split_modalities(F.instance_norm(x, eps=self.norms[0].eps), self.num_modalities)
        shape = (self.num_modalities, 1, channels, 1, 1)
        return (normalised * self.gammas().view(shape) + self.betas().view(shape)).flatten(0, 1)

    def gammas(self) -> torch.Tensor:
        """The scaling factors, ``[M, C]`` (one row per modality)."""
        return torch.stack([norm.weight for norm in self.norms])

    def betas(self) -> torch.Tensor:
        return torch.stack([norm.bias for norm in self.norms])

    def modal_weights(self) -> list[nn.Parameter]:
        """The per-modality scaling-factor parameters, modality order (what the L1 sparsity acts on)."""
        return [norm.weight for norm in self.norms]
