"""The DeepLabv3+ head (Chen et al., ECCV 2018) in the shared-conv / private-BN form: ASPP with image pooling, the
48-channel low-level projection and two refining separable convs, every conv shared by the modalities, every BN per
modality.

As the authors' TensorFlow code builds it for Xception (``aspp_with_separable_conv``, ``decoder_use_separable_conv``):
the ASPP's three atrous branches and the decoder's two 3x3 convs are separable (depthwise -> BN -> ReLU -> pointwise ->
BN -> ReLU); the projection of the five concatenated ASPP branches is followed by dropout 0.1 (keep 0.9); the logits
are a 1x1 conv with a bias at stride 4.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .modal import ModalBatchNorm2d, SharedConv2d
from .xception import SeparableConv2d, aspp_rates


class ConvNormReLU(nn.Sequential):
    """A shared 1x1 conv, a per-modality BN, a ReLU."""

    def __init__(self, in_channels: int, out_channels: int, num_modalities: int, shared_bn: bool = False):
        super().__init__(SharedConv2d(in_channels, out_channels, 1, bias=False, num_modalities=num_modalities),
                         ModalBatchNorm2d(out_channels, num_modalities, shared=shared_bn), nn.ReLU())


class SeparableNormReLU(nn.Module):
    """A separable 3x3 conv with ReLU inside, a per-modality BN, a ReLU."""

    def __init__(self, in_channels: int, out_channels: int, num_modalities: int, dilation: int = 1,
                 shared_bn: bool = False):
        super().__init__()
        self.conv = SeparableConv2d(in_channels, out_channels, num_modalities, dilation=dilation, shared_bn=shared_bn,
                                    relu_inside=True)
        self.bn = ModalBatchNorm2d(out_channels, num_modalities, shared=shared_bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: image pooling, a 1x1 conv and three atrous separable convs, concatenated and
    projected to ``dim`` channels."""

    def __init__(self, in_channels: int, dim: int, num_modalities: int, *, output_stride: int = 16,
                 shared_bn: bool = False, dropout: float = 0.1):
        super().__init__()
        branch = partial(ConvNormReLU, num_modalities=num_modalities, shared_bn=shared_bn)
        self.image_pooling = branch(in_channels, dim)
        self.conv1x1 = branch(in_channels, dim)
        self.atrous = nn.ModuleList(
            SeparableNormReLU(in_channels, dim, num_modalities, dilation=rate, shared_bn=shared_bn)
            for rate in aspp_rates(output_stride))
        self.project = branch(5 * dim, dim)
        self.dropout = nn.Dropout(dropout)

    def set_output_stride(self, output_stride: int) -> None:
        for branch, rate in zip(self.atrous, aspp_rates(output_stride), strict=True):
            branch.conv.set_geometry(dilation=rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == self.image_pooling[1].num_modalities:
            # BatchNorm of a 1x1 map with one sample per modality has no variance to normalise by
            raise ValueError("the DeepLabv3+ ASPP's image pooling needs at least 2 samples per modality in training, "
                             f"got a batch of 1 (input {list(x.shape)}); raise train.batch_size per worker")
        pooled = self.image_pooling(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, *x.shape[-2:])
        branches = [pooled, self.conv1x1(x), *(branch(x) for branch in self.atrous)]
        return self.dropout(self.project(torch.cat(branches, dim=1)))


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on the deepest features, upsampled to the low-level features' stride 4, joined with their 48-channel
    projection, refined by two separable convs; logits at stride 4."""

    def __init__(self, in_channels: int, low_level_channels: int, num_classes: int, num_modalities: int, *,
                 aspp_dim: int = 256, low_level_dim: int = 48, decoder_dim: int = 256, output_stride: int = 16,
                 shared_bn: bool = False):
        super().__init__()
        self.aspp = ASPP(in_channels, aspp_dim, num_modalities, output_stride=output_stride, shared_bn=shared_bn)
        self.low_level = ConvNormReLU(low_level_channels, low_level_dim, num_modalities, shared_bn=shared_bn)
        refine = partial(SeparableNormReLU, num_modalities=num_modalities, shared_bn=shared_bn)
        self.refine = nn.Sequential(refine(aspp_dim + low_level_dim, decoder_dim), refine(decoder_dim, decoder_dim))
        self.classifier = SharedConv2d(decoder_dim, num_classes, 1, bias=True, num_modalities=num_modalities)

    def set_output_stride(self, output_stride: int) -> None:
        self.aspp.set_output_stride(output_stride)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low_level, deepest = features
        x = F.interpolate(self.aspp(deepest), size=low_level.shape[-2:], mode="bilinear", align_corners=True)
        return self.classifier(self.refine(torch.cat([x, self.low_level(low_level)], dim=1)))
