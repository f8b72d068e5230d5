"""The shared-weights segmenter most fusion models are: an encoder and its decoder (ResNet + Light-Weight RefineNet,
aligned Xception + DeepLabv3+, or Mix Transformer + SegFormer's all-MLP decoder), the alpha ensemble."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import SegmentationBackbone
from .deeplab import DeepLabV3PlusDecoder
from .fusion import FusionModel, FusionOutput, alpha_ensemble, fusion_point_names
from .mit import MiTEncoder, MiTSpec
from .refinenet import RefineNetDecoder
from .resnet import BlockFactory, ResNetEncoder, plain_block
from .segformer import SegFormerDecoder
from .xception import XceptionEncoder, XceptionSpec

MiTEncoderFactory = Callable[[MiTSpec, int, int], MiTEncoder]


def encoder_and_decoder(spec: SegmentationBackbone, num_classes: int, num_branches: int, *, in_channels: int,
                        shared_bn: bool, block_factory: BlockFactory, rcu_residual: str,
                        mit_encoder: MiTEncoderFactory = MiTEncoder) -> tuple[nn.Module, nn.Module]:
    """The backbone's encoder and its decoder: RefineNet under a ResNet, DeepLabv3+ under an Xception (which has no
    residual conv units: ``rcu_residual`` is RefineNet's alone), the all-MLP decoder under a Mix Transformer (whose
    norms are LayerNorms and whose blocks no CNN block factory builds: ``mit_encoder`` makes its encoder from
    ``(spec, num_branches, in_channels)``, TokenFusion's for token exchange)."""
    if isinstance(spec, MiTSpec):
        if shared_bn or block_factory is not plain_block:
            raise ValueError("a Mix Transformer backbone takes no shared-BN or exchanging CNN blocks: its norms are "
                             "LayerNorms (private per modality); fuse its tokens with tokenfusion")
        return (mit_encoder(spec, num_branches, in_channels),
                SegFormerDecoder(spec.out_channels, spec.decoder_dim, num_classes, num_branches))
    if isinstance(spec, XceptionSpec):
        encoder = XceptionEncoder(spec, num_branches, in_channels, shared_bn, block_factory)
        decoder = DeepLabV3PlusDecoder(spec.out_channels, spec.low_level_channels, num_classes, num_branches,
                                       aspp_dim=spec.aspp_dim, low_level_dim=spec.low_level_dim,
                                       decoder_dim=spec.decoder_dim, output_stride=encoder.output_stride,
                                       shared_bn=shared_bn)
        return encoder, decoder
    encoder = ResNetEncoder(spec, num_branches, in_channels, shared_bn, block_factory)
    return encoder, RefineNetDecoder(spec.out_channels, spec.decoder_dims, num_classes, num_branches,
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
        mit_encoder: MiTEncoderFactory = MiTEncoder,
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
                                                         rcu_residual=rcu_residual, mit_encoder=mit_encoder)
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
