"""SegFormer's all-MLP decoder on stacked branches: each stage's features projected to one width, upsampled to stride
4, concatenated, fused by a 1×1 convolution + BatchNorm + ReLU and classified.

One decoder serves every branch with the same weights, BatchNorm included, its statistics per branch: TokenFusion's
WeTr runs its single ``SegFormerHead`` once per modality (``ModalBatchNorm2d(shared=True)`` is exactly that)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mit import SharedLinear
from .modal import ModalBatchNorm2d, SharedConv2d

DROPOUT = 0.1  # the reference's Dropout2d before the classifier


class SegFormerDecoder(nn.Module):
    def __init__(self, in_channels: tuple[int, ...], embed_dim: int, num_classes: int, num_branches: int):
        super().__init__()
        self.linear_c = nn.ModuleList(SharedLinear(channels, embed_dim, num_modalities=num_branches)
                                      for channels in in_channels)
        self.linear_fuse = SharedConv2d(embed_dim * len(in_channels), embed_dim, 1, bias=False,
                                        num_modalities=num_branches)
        self.fuse_bn = ModalBatchNorm2d(embed_dim, num_branches, shared=True)
        self.dropout = nn.Dropout2d(DROPOUT)
        self.linear_pred = SharedConv2d(embed_dim, num_classes, 1, num_modalities=num_branches)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[2:]
        projected = []
        for linear, x in zip(self.linear_c, features, strict=True):
            y = linear(x.flatten(2).transpose(1, 2)).transpose(1, 2).unflatten(2, x.shape[2:])
            projected.append(y if y.shape[2:] == size else F.interpolate(y, size=size, mode="bilinear",
                                                                          align_corners=False))
        fused = F.relu(self.fuse_bn(self.linear_fuse(torch.cat(projected[::-1], dim=1))))  # c4, c3, c2, c1
        return self.linear_pred(self.dropout(fused))
