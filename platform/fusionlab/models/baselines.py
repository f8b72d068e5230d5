"""Fusion baselines that are not a shared-weights segmenter: early concatenation and late aggregation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .backbone_registry import SegmentationBackbone
from .fusion import FusionModel, FusionOutput
from .segmenter import FusionSegmenter


class EarlyConcat(FusionModel):
    """One network whose input is the modalities concatenated along channels (``M * C`` input channels)."""

    def __init__(self, spec: SegmentationBackbone, num_classes: int, modalities: Sequence[str], *, in_channels: int = 3,
                 rcu_residual: str = "pre_activation"):
        super().__init__(modalities, num_classes, in_channels)
        joined = "+".join(modalities)
        self.net = FusionSegmenter(spec, num_classes, [joined], in_channels=in_channels * len(modalities),
                                   rcu_residual=rcu_residual)

    def forward(self, x: torch.Tensor) -> FusionOutput:
        self.check_input(x)
        return self.net(x.transpose(0, 1).flatten(1, 2).unsqueeze(0))

    def fusion_points(self) -> list[str]:
        return ["input (channel concatenation)"]

    def branch_names(self) -> list[str]:
        return self.net.branch_names()


class LateFusion(FusionModel):
    """One complete network per modality (no shared weights); the fused prediction is their mean."""

    def __init__(self, spec: SegmentationBackbone, num_classes: int, modalities: Sequence[str], *, in_channels: int = 3,
                 rcu_residual: str = "pre_activation"):
        super().__init__(modalities, num_classes, in_channels)
        self.nets = nn.ModuleList(
            FusionSegmenter(spec, num_classes, [m], in_channels=in_channels, ensemble=False,
                            rcu_residual=rcu_residual) for m in modalities
        )

    def forward(self, x: torch.Tensor) -> FusionOutput:
        self.check_input(x)
        branches = torch.stack([net(x[m: m + 1]).branches[0] for m, net in enumerate(self.nets)])
        return FusionOutput(branches, branches.mean(0))

    def fusion_points(self) -> list[str]:
        return ["logits (mean)"]
