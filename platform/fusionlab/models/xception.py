"""Aligned Xception-65 (DeepLabv3+'s backbone) with convolutions shared by all modalities and BatchNorms per modality.

The layout is the DeepLab authors' TensorFlow reference (``deeplab/core/xception.py``, ``xception_65``), which the
DeepLabv3+ paper describes: a stem (3x3 conv 32 stride 2, 3x3 conv 64), an entry flow of three units (128, 256, 728
channels, each ending in a stride-2 separable conv), a middle flow of 16 units of 728 with identity skips, and an exit
flow of two units ((728, 1024, 1024) with a 1x1-conv skip, then (1536, 1536, 2048) with no skip). Every separable conv
is split as in that code: depthwise 3x3 -> BN -> pointwise 1x1 -> BN, the ReLU before it (or, in the last unit, after
each BN). At output stride 16 the exit flow's stride becomes a dilation (rate 2), at 8 the entry flow's last stride as
well (rates 2 and 4), as TensorFlow's ``stack_blocks_dense`` converts them; the weights are the same at every output
stride, so a model trained at 16 can be evaluated at 8 (``XceptionEncoder.set_output_stride``).

The decoder's low-level input is the entry flow's second unit after its middle separable conv (256 channels at stride
4: ``entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise``).

``xception71`` is TensorFlow's ``xception_71`` (five entry units, the low-level features from the third). DeepLabv3+ on
it has 43.48M parameters at 19 classes, the count the AsymFusion paper gives for its "Xception-65" Cityscapes
baseline; on Xception-65 the TensorFlow layout has 41.05M (docs/models.md, "Cityscapes on DeepLabv3+").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .modal import ModalBatchNorm2d, SharedConv2d

Skip = Literal["conv", "sum", "none"]
OUTPUT_STRIDES = (8, 16)
STEM_STRIDE = 2


@dataclass(frozen=True)
class XceptionSpec:
    """The widths of an aligned Xception and of its DeepLabv3+ head."""

    entry_widths: tuple[int, ...] = (128, 256, 728)  # one unit each, all three separable convs this wide
    entry_strides: tuple[int, ...] = (2, 2, 2)
    low_level_unit: int = 1  # the entry unit whose middle output (at stride 4) is the decoder's low-level input
    middle_blocks: int = 16  # units of entry_widths[-1] channels with identity skips
    exit_depths: tuple[tuple[int, int, int], tuple[int, int, int]] = ((728, 1024, 1024), (1536, 1536, 2048))
    stem: tuple[int, int] = (32, 64)
    aspp_dim: int = 256
    low_level_dim: int = 48  # the decoder's projection of the low-level features
    decoder_dim: int = 256

    def scaled(self, width: float) -> XceptionSpec:
        """The same depth with every encoder and head width times ``width`` (rounded, at least 1)."""
        def times(channels: int) -> int:
            return max(1, round(channels * width))

        return XceptionSpec(tuple(map(times, self.entry_widths)), self.entry_strides, self.low_level_unit,
                            self.middle_blocks,
                            tuple(tuple(map(times, depths)) for depths in self.exit_depths),
                            tuple(map(times, self.stem)), times(self.aspp_dim), times(self.low_level_dim),
                            times(self.decoder_dim))

    @property
    def low_level_channels(self) -> int:
        return self.entry_widths[self.low_level_unit]

    @property
    def out_channels(self) -> int:
        return self.exit_depths[-1][-1]

    def units(self) -> list[UnitLayout]:
        """Every unit in order, with its unstrided geometry (``stride`` is the unit's own, before dilation)."""
        layout = []
        entry_in = self.stem[1]
        count = len(self.entry_widths)
        for index, (width, stride) in enumerate(zip(self.entry_widths, self.entry_strides, strict=True)):
            layout.append(UnitLayout("entry", index, count, entry_in, (width,) * 3, stride, "conv", False))
            entry_in = width
        middle = self.entry_widths[-1]
        for index in range(self.middle_blocks):
            layout.append(UnitLayout("middle", index, self.middle_blocks, middle, (middle,) * 3, 1, "sum", False))
        first, last = self.exit_depths
        layout.append(UnitLayout("exit", 0, 2, middle, first, 2, "conv", False))
        layout.append(UnitLayout("exit", 1, 2, first[-1], last, 1, "none", True))
        return layout


class UnitLayout(NamedTuple):
    flow: str  # "entry", "middle" or "exit"
    index: int  # 0-based within the flow
    count: int  # units in the flow
    in_channels: int
    depths: tuple[int, int, int]
    stride: int
    skip: Skip
    relu_inside: bool  # ReLU after each BN inside the separable convs (the last unit) instead of before each conv


def unit_geometry(units: list[UnitLayout], output_stride: int) -> list[tuple[int, int]]:
    """``(stride, dilation)`` per unit at ``output_stride``: once the features reach it, each further stride becomes
    a dilation of the units after it (TensorFlow's ``stack_blocks_dense``; the unit whose stride is dropped keeps the
    current rate)."""
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"xception output_stride must be one of {list(OUTPUT_STRIDES)}, got {output_stride}")
    current, rate, geometry = STEM_STRIDE, 1, []
    for unit in units:
        if current == output_stride:
            geometry.append((1, rate))
            rate *= unit.stride
        else:
            geometry.append((unit.stride, 1))
            current *= unit.stride
    if current != output_stride:
        raise ValueError(f"this xception reaches output stride {current}, not {output_stride}")
    return geometry


def aspp_rates(output_stride: int) -> tuple[int, int, int]:
    """The ASPP's atrous rates: (6, 12, 18) at output stride 16, doubled at 8 (DeepLabv3+)."""
    return tuple(rate * 16 // output_stride for rate in (6, 12, 18))


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 -> per-modality BN -> (ReLU when ``relu_inside``) -> pointwise 1x1; the BN after the pointwise
    conv is the caller's. Both convs are shared by the modalities."""

    def __init__(self, in_channels: int, out_channels: int, num_modalities: int, *, stride: int = 1,
                 dilation: int = 1, shared_bn: bool = False, relu_inside: bool = False):
        super().__init__()
        self.depthwise = SharedConv2d(in_channels, in_channels, 3, stride=stride, padding=dilation, dilation=dilation,
                                      groups=in_channels, bias=False, num_modalities=num_modalities)
        self.depthwise_bn = ModalBatchNorm2d(in_channels, num_modalities, shared=shared_bn)
        self.pointwise = SharedConv2d(in_channels, out_channels, 1, bias=False, num_modalities=num_modalities)
        self.relu_inside = relu_inside

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise_bn(self.depthwise(x))
        return self.pointwise(F.relu(x) if self.relu_inside else x)

    def set_geometry(self, stride: int | None = None, dilation: int | None = None) -> None:
        """Change the depthwise conv's stride and dilation in place (the weights do not depend on them)."""
        if stride is not None:
            self.depthwise.stride = (stride, stride)
        if dilation is not None:
            self.depthwise.dilation = (dilation, dilation)
            self.depthwise.padding = (dilation, dilation)


class XceptionBlock(nn.Module):
    """One Xception unit: three separable convs, each followed by a per-modality BN, plus its skip (a strided 1x1
    conv + BN, the identity, or none). The unit's stride is its third conv's.

    ``middle`` (the second separable conv and its BN) is where the fusion variants hook in, as ``Bottleneck.middle``
    is in the ResNets: ``middle_norm`` gives the BN's output, ``activate_after`` what follows it inside the conv.
    """

    is_fusion_point = False

    def __init__(self, in_channels: int, depths: tuple[int, int, int], num_modalities: int, *, stride: int = 1,
                 dilation: int = 1, skip: Skip = "conv", relu_inside: bool = False, shared_bn: bool = False):
        super().__init__()
        if skip == "sum" and (stride != 1 or in_channels != depths[-1]):
            raise ValueError(f"an identity skip needs stride 1 and {in_channels} == {depths[-1]} channels")
        separable = partial(SeparableConv2d, num_modalities=num_modalities, dilation=dilation, shared_bn=shared_bn,
                            relu_inside=relu_inside)
        norm = partial(ModalBatchNorm2d, num_modalities=num_modalities, shared=shared_bn)
        first, second, third = depths
        self.num_modalities = num_modalities
        self.relu_inside = relu_inside
        self.skip_kind = skip
        self.conv1, self.bn1 = separable(in_channels, first), norm(first)
        self.conv2, self.bn2 = separable(first, second), norm(second)
        self.conv3, self.bn3 = separable(second, third, stride=stride), norm(third)
        if skip == "conv":
            self.skip = SharedConv2d(in_channels, third, 1, stride=stride, bias=False, num_modalities=num_modalities)
            self.skip_bn = norm(third)

    def activate_before(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.relu_inside else F.relu(x)

    def activate_after(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) if self.relu_inside else x

    def middle_norm(self, out: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.activate_before(out)))

    def middle(self, out: torch.Tensor) -> torch.Tensor:
        return self.activate_after(self.middle_norm(out))

    def forward_with_middle(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The unit's output and its middle stage's (the decoder's low-level features in the entry flow)."""
        out = self.activate_after(self.bn1(self.conv1(self.activate_before(x))))
        middle = self.middle(out)
        out = self.activate_after(self.bn3(self.conv3(self.activate_before(middle))))
        if self.skip_kind == "conv":
            out = out + self.skip_bn(self.skip(x))
        elif self.skip_kind == "sum":
            out = out + x
        return out, middle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_middle(x)[0]

    def set_geometry(self, stride: int, dilation: int) -> None:
        for conv in (self.conv1, self.conv2, self.conv3):
            conv.set_geometry(dilation=dilation)
        self.conv3.set_geometry(stride=stride)
        if self.skip_kind == "conv":
            self.skip.stride = (stride, stride)


class FlowPosition(NamedTuple):
    stage: int  # 1 entry, 2 middle, 3 exit (as ``resnet.BlockPosition.stage``)
    index: int
    count: int


XceptionBlockFactory = Callable[..., XceptionBlock]  # (position, block_class, **XceptionBlock kwargs)


def plain_unit(position: FlowPosition, block: type[XceptionBlock], **kwargs) -> XceptionBlock:
    return block(**kwargs)


FLOWS = ("entry", "middle", "exit")


class XceptionEncoder(nn.Module):
    """Stem + entry, middle and exit flows on the stacked modalities; returns ``[low_level, out]`` (strides 4 and
    ``output_stride``)."""

    def __init__(self, spec: XceptionSpec, num_modalities: int, in_channels: int = 3, shared_bn: bool = False,
                 block_factory: XceptionBlockFactory = plain_unit, output_stride: int = 16):
        super().__init__()
        self.spec = spec
        norm = partial(ModalBatchNorm2d, num_modalities=num_modalities, shared=shared_bn)
        stem, width = spec.stem
        self.conv1 = SharedConv2d(in_channels, stem, 3, stride=STEM_STRIDE, padding=1, bias=False,
                                  num_modalities=num_modalities)
        self.bn1 = norm(stem)
        self.conv2 = SharedConv2d(stem, width, 3, padding=1, bias=False, num_modalities=num_modalities)
        self.bn2 = norm(width)
        units = spec.units()
        flows: dict[str, list[XceptionBlock]] = {flow: [] for flow in FLOWS}
        for unit, (stride, dilation) in zip(units, unit_geometry(units, output_stride), strict=True):
            position = FlowPosition(FLOWS.index(unit.flow) + 1, unit.index, unit.count)
            flows[unit.flow].append(block_factory(
                position, XceptionBlock, in_channels=unit.in_channels, depths=unit.depths,
                num_modalities=num_modalities, stride=stride, dilation=dilation, skip=unit.skip,
                relu_inside=unit.relu_inside, shared_bn=shared_bn))
        self.entry, self.middle, self.exit = (nn.Sequential(*flows[flow]) for flow in FLOWS)
        self.output_stride = output_stride
        self._init_weights()

    def _init_weights(self) -> None:  # as the ResNets'
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def blocks(self) -> list[XceptionBlock]:
        return [*self.entry, *self.middle, *self.exit]

    def set_output_stride(self, output_stride: int) -> None:
        """Re-stride the flows in place for ``output_stride`` (8 or 16); the weights are unchanged."""
        geometry = unit_geometry(self.spec.units(), output_stride)
        for block, (stride, dilation) in zip(self.blocks(), geometry, strict=True):
            block.set_geometry(stride, dilation)
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        low_level = None
        for index, block in enumerate(self.entry):
            x, middle = block.forward_with_middle(x)
            if index == self.spec.low_level_unit:
                low_level = middle
        return [low_level, self.exit(self.middle(x))]
