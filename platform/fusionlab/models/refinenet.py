"""Light-Weight RefineNet decoder (Nekrasov et al., BMVC 2018) as used by the CEN and AsymFusion references.

No BatchNorm: the decoder's convolutions are shared by all modalities and run once on the stacked batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .modal import SharedConv2d


def conv3x3(in_channels: int, out_channels: int, num_modalities: int, bias: bool = False) -> SharedConv2d:
    return SharedConv2d(in_channels, out_channels, 3, padding=1, bias=bias, num_modalities=num_modalities)


RCU_RESIDUALS = ("post_activation", "pre_activation")


class ResidualConvUnits(nn.Module):
    """A chain of RCUs: ``r + conv(relu(conv(relu(x))))``, the first conv of each with a bias.

    ``residual="pre_activation"`` adds back ``r = x`` (Light-Weight RefineNet as published); ``"post_activation"``
    adds back ``r = relu(x)``, what the CEN/AsymFusion code computes because its first ReLU runs in place on ``x``.
    """

    def __init__(self, channels: int, num_blocks: int, num_modalities: int, residual: str = "pre_activation"):
        super().__init__()
        if residual not in RCU_RESIDUALS:
            raise ValueError(f"rcu_residual must be one of {RCU_RESIDUALS}, got {residual!r}")
        self.post_activation = residual == "post_activation"
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.ReLU(),
                conv3x3(channels, channels, num_modalities, bias=True),
                nn.ReLU(),
                conv3x3(channels, channels, num_modalities),
            )
            for _ in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.post_activation:
                x = F.relu(x)  # block(x) starts with relu(x) too: the same value, as in the references
            x = x + block(x)
        return x


class ChainedResidualPooling(nn.Module):
    """``x + sum_i top_i`` with ``top_i = conv_i(maxpool5x5(top_{i-1}))``, ``top_0 = x``."""

    def __init__(self, channels: int, num_stages: int, num_modalities: int):
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size=5, stride=1, padding=2)
        self.convs = nn.ModuleList(conv3x3(channels, channels, num_modalities) for _ in range(num_stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = x
        for conv in self.convs:
            top = conv(self.pool(top))
            x = x + top
        return x


class RefineStage(nn.Module):
    """One refinement path: reduce the skip, adapt (2 RCUs), join the coarser path, pool (CRP), refine (3 RCUs)."""

    def __init__(self, in_channels: int, dim: int, out_dim: int | None, joins_coarser: bool, num_modalities: int,
                 rcu_residual: str = "pre_activation"):
        super().__init__()
        self.dimred = conv3x3(in_channels, dim, num_modalities)
        self.adapt = ResidualConvUnits(dim, 2, num_modalities, rcu_residual)
        self.joint = conv3x3(dim, dim, num_modalities) if joins_coarser else None
        self.pool = ChainedResidualPooling(dim, 4, num_modalities)
        self.refine = ResidualConvUnits(dim, 3, num_modalities, rcu_residual)
        self.project = conv3x3(dim, out_dim, num_modalities) if out_dim is not None else None

    def forward(self, skip: torch.Tensor, coarser: torch.Tensor | None = None) -> torch.Tensor:
        x = self.adapt(self.dimred(skip))
        if self.joint is not None:
            x = self.joint(x) + coarser
        x = self.refine(self.pool(F.relu(x)))
        return x if self.project is None else self.project(x)


class RefineNetDecoder(nn.Module):
    """Four refinement stages from the deepest features up; a 3x3 classifier at 1/4 input resolution."""

    def __init__(
        self,
        encoder_channels: tuple[int, int, int, int],
        dims: tuple[int, int, int, int],
        num_classes: int,
        num_modalities: int,
        dropout: float = 0.5,
        rcu_residual: str = "pre_activation",
    ):
        super().__init__()
        deepest_first = encoder_channels[::-1]
        self.stages = nn.ModuleList(
            RefineStage(
                deepest_first[i],
                dims[i],
                dims[i + 1] if i < 3 else None,
                joins_coarser=i > 0,
                num_modalities=num_modalities,
                rcu_residual=rcu_residual,
            )
            for i in range(4)
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = conv3x3(dims[3], num_classes, num_modalities, bias=True)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        l1, l2, l3, l4 = features
        x = self.stages[0](self.dropout(l4))
        for stage, skip in zip(self.stages[1:], (self.dropout(l3), l2, l1), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            x = stage(skip, x)
        return self.classifier(self.dropout(x))
