"""Bottleneck ResNets whose convolutions are shared by all modalities and whose BatchNorms are per modality.

Attribute names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv2``, ``layer1.0.downsample.1``) so
ImageNet weights map by inserting the modality index (``bn1.weight`` -> ``bn1.bns.<m>.weight``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .modal import ModalBatchNorm2d, SharedConv2d


@dataclass(frozen=True)
class BackboneSpec:
    layers: tuple[int, int, int, int]
    width: int = 64  # stem and first-stage width; stage widths are width * (1, 2, 4, 8)
    decoder_dims: tuple[int, int, int, int] = (512, 256, 256, 256)  # RefineNet widths, deepest stage first

    def scaled(self, width: float) -> BackboneSpec:
        """The same depth with every encoder and decoder width times ``width`` (rounded, at least 1)."""
        return BackboneSpec(self.layers, _times(self.width, width), tuple(_times(d, width) for d in self.decoder_dims))

    @property
    def out_channels(self) -> tuple[int, int, int, int]:
        """Channels of the four stage outputs, shallowest first."""
        return tuple(self.width * Bottleneck.expansion * 2**i for i in range(4))


def _times(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class BlockPosition(NamedTuple):
    stage: int  # 1..4
    index: int  # 0-based index of the block within its stage
    count: int  # blocks in the stage


class Bottleneck(nn.Module):
    expansion = 4
    is_fusion_point = False

    def __init__(self, inplanes: int, planes: int, num_modalities: int, stride: int = 1, shared_bn: bool = False):
        super().__init__()
        conv = partial(SharedConv2d, num_modalities=num_modalities, bias=False)
        norm = partial(ModalBatchNorm2d, num_modalities=num_modalities, shared=shared_bn)
        width_out = planes * self.expansion
        self.num_modalities = num_modalities
        self.conv1 = conv(inplanes, planes, 1)
        self.bn1 = norm(planes)
        self.conv2 = conv(planes, planes, 3, stride=stride, padding=1)
        self.bn2 = norm(planes)
        self.conv3 = conv(planes, width_out, 1)
        self.bn3 = norm(width_out)
        self.downsample = None
        if stride != 1 or inplanes != width_out:
            self.downsample = nn.Sequential(conv(inplanes, width_out, 1, stride=stride), norm(width_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.middle(out)
        out = self.bn3(self.conv3(out))
        return F.relu(out + identity)

    def middle(self, out: torch.Tensor) -> torch.Tensor:
        """The 3x3 stage, ``conv2 -> bn2 -> relu``: where the fusion variants hook in."""
        return self.activate_after(self.middle_norm(out))

    def middle_norm(self, out: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(out))

    @staticmethod
    def activate_after(x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


# (position, block class, inplanes=, planes=, num_modalities=, stride=, shared_bn=): the block at ``position``; the
# plain block's class is passed so that a fusion model can pick its variant for the backbone's family.
BlockFactory = Callable[..., Bottleneck]


def plain_block(position: BlockPosition, block: type[Bottleneck], **kwargs) -> Bottleneck:
    return block(**kwargs)


class ResNetEncoder(nn.Module):
    """Stem + four bottleneck stages on the stacked modalities; returns the four stage outputs."""

    def __init__(
        self,
        spec: BackboneSpec,
        num_modalities: int,
        in_channels: int = 3,
        shared_bn: bool = False,
        block_factory: BlockFactory = plain_block,
    ):
        super().__init__()
        self.spec = spec
        self.conv1 = SharedConv2d(
            in_channels, spec.width, 7, stride=2, padding=3, bias=False, num_modalities=num_modalities
        )
        self.bn1 = ModalBatchNorm2d(spec.width, num_modalities, shared=shared_bn)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = spec.width
        for stage, count in enumerate(spec.layers, start=1):
            planes = spec.width * 2 ** (stage - 1)
            blocks = []
            for index in range(count):
                blocks.append(
                    block_factory(
                        BlockPosition(stage, index, count),
                        Bottleneck,
                        inplanes=inplanes,
                        planes=planes,
                        num_modalities=num_modalities,
                        stride=2 if stage > 1 and index == 0 else 1,
                        shared_bn=shared_bn,
                    )
                )
                inplanes = planes * Bottleneck.expansion
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        features = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            features.append(x)
        return features
