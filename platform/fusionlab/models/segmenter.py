"""The shared-weights segmenter most fusion models are: ResNet encoder, RefineNet decoder, alpha ensemble."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .fusion import FusionModel, FusionOutput, alpha_ensemble, fusion_point_names
from .refinenet import RefineNetDecoder
from .resnet import BackboneSpec, BlockFactory, ResNetEncoder, plain_block


class FusionSegmenter(FusionModel):
    """ResNet encoder + RefineNet decoder, every conv shared by the branches, BN private per branch.

    Branches run stacked on the batch axis. The ensemble is ``sum_m softmax(alpha)_m * out_m.detach()``, so a loss
    on it trains only ``alpha``. ``branch_modalities`` picks which input modalities get a branch (all by default).
    """

    def __init__(
        self,
        spec: BackboneSpec,
        num_classes: int,
        modalities: Sequence[str],
        *,
        branch_modalities: Sequence[str] | None = None,
        in_channels: int = 3,
        shared_bn: bool = False,
        block_factory: BlockFactory = plain_block,
        ensemble: bool = True,
        rcu_residual: str = "pre_activation",
    ):
        super().__init__(modalities, num_classes, in_channels)
        branches = tuple(branch_modalities or modalities)
        unknown = [m for m in branches if m not in self.modalities]
        if unknown:
            raise ValueError(f"branch modalities {unknown} are not among the inputs {list(self.modalities)}")
        self.branch_modalities = branches
        self.branch_index = [self.modalities.index(m) for m in branches]
        num_branches = len(branches)
        self.encoder = ResNetEncoder(spec, num_branches, in_channels, shared_bn, block_factory)
        self.decoder = RefineNetDecoder(spec.out_channels, spec.decoder_dims, num_classes, num_branches,
                                        rcu_residual=rcu_residual)
        self.alpha = nn.Parameter(torch.ones(num_branches)) if ensemble else None

    def forward(self, x: torch.Tensor) -> FusionOutput:
        self.check_input(x)
        if self.branch_index != list(range(len(self.modalities))):
            x = x[self.branch_index]
        num_branches, batch = x.shape[:2]
        logits = self.decoder(self.encoder(x.flatten(0, 1)))
        branches = logits.unflatten(0, (num_branches, batch))
        if self.alpha is None:
            return FusionOutput(branches, branches.mean(0))
        return alpha_ensemble(branches, self.alpha)

    def branch_names(self) -> list[str]:
        return list(self.branch_modalities)

    def ensemble_weights(self) -> torch.Tensor | None:
        return None if self.alpha is None else F.softmax(self.alpha.detach().float(), 0)

    def fusion_points(self) -> list[str]:
        points = fusion_point_names(self)
        if not points and len(self.branch_modalities) > 1:
            points = ["logits (alpha ensemble)"]
        return points
