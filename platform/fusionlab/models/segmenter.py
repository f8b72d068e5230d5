"""The interface every fusion model implements, and the shared-weights segmenter most of them are."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .refinenet import RefineNetDecoder
from .resnet import BackboneSpec, BlockFactory, ResNetEncoder, plain_block


class FusionOutput(NamedTuple):
    branches: torch.Tensor  # [M', B, K, h, w]: one prediction per branch (h, w = 1/4 of the input)
    ensemble: torch.Tensor  # [B, K, h, w]: the fused prediction


def alpha_ensemble(branches: torch.Tensor, alpha: torch.Tensor) -> FusionOutput:
    """``sum_m softmax(alpha)_m * branch_m.detach()``: a loss on the ensemble trains only ``alpha``."""
    weights = F.softmax(alpha, dim=0).view(-1, *([1] * (branches.dim() - 1)))
    return FusionOutput(branches, (weights * branches.detach()).sum(0))


def fusion_point_names(model: nn.Module) -> list[str]:
    """Modules marked ``is_fusion_point``, named with their ``fusion_suffix`` (e.g. ``encoder.layer1.0.bn2``)."""
    return [f"{name}{getattr(module, 'fusion_suffix', '')}" for name, module in model.named_modules()
            if getattr(module, "is_fusion_point", False)]


class FusionModel(nn.Module):
    """Common interface: ``forward(x)`` with ``x`` the modalities stacked as ``[M, B, C, H, W]``."""

    def __init__(self, modalities: Sequence[str], num_classes: int, in_channels: int):
        super().__init__()
        if not modalities or len(set(modalities)) != len(modalities):
            raise ValueError(f"modalities must be a non-empty list of distinct names, got {list(modalities)}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.modalities = tuple(modalities)
        self.num_classes = num_classes
        self.in_channels = in_channels

    def check_input(self, x: torch.Tensor) -> None:
        expected = (len(self.modalities), "B", self.in_channels, "H", "W")
        if x.dim() != 5 or x.shape[0] != len(self.modalities) or x.shape[2] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects input [M, B, C, H, W] = {list(expected)} for modalities "
                f"{list(self.modalities)}, got {list(x.shape)}"
            )

    def regularization_loss(self) -> torch.Tensor:
        """Extra loss term the model asks for (CEN's sparsity penalty); zero by default."""
        return next(self.parameters()).new_zeros(())

    def fusion_points(self) -> list[str]:
        """Where modalities meet, as module names (or a short description)."""
        return []

    def branch_names(self) -> list[str]:
        """One name per entry of ``FusionOutput.branches``."""
        return list(self.modalities)

    def encoders(self) -> list[tuple[str, ResNetEncoder]]:
        """The ResNet encoders with their module prefix, for loading ImageNet weights."""
        return [(name, module) for name, module in self.named_modules() if isinstance(module, ResNetEncoder)]


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

    def fusion_points(self) -> list[str]:
        points = fusion_point_names(self)
        if not points and len(self.branch_modalities) > 1:
            points = ["logits (alpha ensemble)"]
        return points
