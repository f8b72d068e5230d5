"""The shared-weights segmenter most fusion models are: an encoder and its decoder, as the backbone's family builds
them (ResNet + Light-Weight RefineNet, aligned Xception + DeepLabv3+, Mix Transformer + SegFormer's all-MLP decoder:
``models/backbones/``), the alpha ensemble."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbone_registry import SegmentationBackbone, family_of
from .deeplab import DeepLabV3PlusDecoder
from .fusion import FusionModel, FusionOutput, alpha_ensemble, fusion_point_names
from .resnet import BlockFactory, plain_block
from .xception import XceptionEncoder

EncoderClass = Callable[..., nn.Module]  # called as the family's encoder class (a MiT's: spec, branches, channels)


def encoder_and_decoder(spec: SegmentationBackbone, num_classes: int, num_branches: int, *, in_channels: int,
                        shared_bn: bool, block_factory: BlockFactory, rcu_residual: str,
                        encoder_class: EncoderClass | None = None) -> tuple[nn.Module, nn.Module]:
    """The backbone's encoder and its family's default decoder (``BackboneFamily.encoder`` / ``decoder``):
    ``block_factory`` picks a CNN family's block variants (CEN's exchanging, AsymFusion's fusing blocks; a Mix
    Transformer refuses any but the plain one), ``encoder_class`` replaces the family's encoder class (TokenFusion's
    token-exchanging MiT), ``rcu_residual`` is RefineNet's alone."""
    family = family_of(spec)
    encoder = family.encoder(spec, num_branches, in_channels=in_channels, shared_bn=shared_bn,
                             block_factory=block_factory, encoder_class=encoder_class)
    return encoder, family.decoder(spec, encoder, num_classes, num_branches, shared_bn=shared_bn,
                                   rcu_residual=rcu_residual)


class FusionSegmenter(FusionModel):
    """Encoder + decoder (``encoder_and_decoder``), every conv shared by the branches, BN private per branch.

    Branches run stacked on the batch axis. The ensemble is ``sum_m softmax(alpha)_m * out_m.detach()``, so a loss
    on it trains only ``alpha``. ``branch_modalities`` picks which input modalities get a branch (all by default).
    """

    def __init__(
        self,
        spec: SegmentationBackbone,
        num_classes: int,
        modalities: Sequence[str],
        *,
        branch_modalities: Sequence[str] | None = None,
        in_channels: int = 3,
        shared_bn: bool = False,
        block_factory: BlockFactory = plain_block,
        ensemble: bool = True,
        rcu_residual: str = "pre_activation",
        encoder_class: EncoderClass | None = None,
    ):
        super().__init__(modalities, num_classes, in_channels)
        branches = tuple(branch_modalities or modalities)
        unknown = [m for m in branches if m not in self.modalities]
        if unknown:
            raise ValueError(f"branch modalities {unknown} are not among the inputs {list(self.modalities)}")
        self.branch_modalities = branches
        self.branch_index = [self.modalities.index(m) for m in branches]
        num_branches = len(branches)
        self.encoder, self.decoder = encoder_and_decoder(spec, num_classes, num_branches, in_channels=in_channels,
                                                         shared_bn=shared_bn, block_factory=block_factory,
                                                         rcu_residual=rcu_residual, encoder_class=encoder_class)
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


def set_output_stride(model: nn.Module, output_stride: int) -> None:
    """Evaluate the Xception networks in ``model`` (a fusion model, a predictor) at output stride 8 or 16 (trained at
    16: the weights do not change, the last strides become dilations); an error for a model without one."""
    if not any(isinstance(module, XceptionEncoder) for module in model.modules()):
        raise ValueError(f"output stride {output_stride}: only the Xception backbones change their output stride "
                         "(a ResNet under RefineNet always predicts from strides 4-32)")
    for module in model.modules():
        if isinstance(module, XceptionEncoder | DeepLabV3PlusDecoder):
            module.set_output_stride(output_stride)
