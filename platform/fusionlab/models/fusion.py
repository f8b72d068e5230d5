"""The interface every fusion model implements: ``forward`` on stacked modalities returns a ``FusionOutput``, and the
optional hooks the training loop calls are declared here with their defaults (never probed with ``getattr``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .backbone_registry import encoder_types


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
        self.branch_modalities: tuple[str, ...] = self.modalities  # the inputs that get a branch (a subclass narrows)
        self.pretrained_file = None  # the ImageNet file the encoder started from (models/pretrained.py sets it)

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

    def after_optimizer_step(self, encoder_lr: float) -> None:
        """Called after every optimizer step with the encoder's current rate (CEN's proximal L1 step); nothing by
        default."""

    def exchange_fractions(self) -> dict[str, float]:
        """Exchanged shares measured on the data since the last call, by stage (TokenFusion's tokens); empty where
        the exchange follows from the weights instead (CEN's channels: ``sparsity.exchange_statistics``)."""
        return {}

    def ensemble_weights(self) -> torch.Tensor | None:
        """The ensemble's weights over ``branch_names()`` (softmax of alpha), or None where the ensemble is not
        learned."""
        return None

    def fusion_points(self) -> list[str]:
        """Where modalities meet, as module names (or a short description)."""
        return []

    def branch_names(self) -> list[str]:
        """One name per entry of ``FusionOutput.branches``."""
        return list(self.modalities)

    def encoders(self) -> list[tuple[str, nn.Module]]:
        """The encoders of the registered backbone families (ResNet, Xception, Mix Transformer, ...) with their module
        prefix, for loading ImageNet weights."""
        types = encoder_types()
        return [(name, module) for name, module in self.named_modules() if isinstance(module, types)]
