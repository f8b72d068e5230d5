"""AsymFusion (Wang et al., "Deep Multimodal Feature Representation with Asymmetric Multi-layer Fusion", MM 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .asym import channel_shuffle, kept_channels, pixel_shift
from .backbone_registry import SegmentationBackbone
from .modal import mean_of_others, split_modalities
from .params import AsymFusionParams
from .resnet import BackboneSpec, Bottleneck
from .segmenter import FusionSegmenter
from .xception import XceptionBlock

# The fusion operations a block applies: both (the paper), or one of them (its ablations).
ASYM_OPS = ("shuffle", "shift")


class AsymMiddle:
    """Mixin for a block (ResNet ``Bottleneck``, ``XceptionBlock``) whose middle stage fuses bidirectionally:
    ``shuffle -> the block's own middle -> (+ others' shift) -> shuffle``, the shift taken of the middle's input.

    In a bottleneck that is ``relu(bn1) -> shuffle -> conv2 -> bn2 -> relu -> (+ shift) -> shuffle -> conv3``; in an
    Xception unit ``bn1 -> shuffle -> relu -> separable conv2 -> bn2 -> (+ shift) -> shuffle -> relu -> conv3`` (the
    shuffle and the zero-filled shift commute with a ReLU, so the ops see the same stream as in a bottleneck, on the
    unit's pre-activation side). ``ops`` drops the shuffles (``("shift",)``) or the shift (``("shuffle",)``)."""

    is_fusion_point = True
    num_modalities: int

    def __init__(self, *args, groups: int, offsets: tuple[tuple[int, int], ...], ops: tuple[str, ...] = ASYM_OPS,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.groups = groups
        self.offsets = tuple(tuple(o) for o in offsets)
        self.ops = ops

    def middle(self, out: torch.Tensor) -> torch.Tensor:
        keep = kept_channels(out.shape[1], self.groups)
        shuffle = "shuffle" in self.ops
        shifted = pixel_shift(out, keep, self.offsets) if "shift" in self.ops else None
        if shuffle:
            out = channel_shuffle(out, self.num_modalities, keep)
        out = super().middle(out)
        if shifted is not None:
            out = out + mean_of_others(split_modalities(shifted, self.num_modalities)).flatten(0, 1)
        return channel_shuffle(out, self.num_modalities, keep) if shuffle else out


class AsymBottleneck(AsymMiddle, Bottleneck):
    """A bottleneck fused by AsymFusion's shuffle and shift around its 3x3 stage (``AsymMiddle``)."""


class AsymXceptionBlock(AsymMiddle, XceptionBlock):
    """An Xception unit fused by AsymFusion's shuffle and shift around its middle separable conv (``AsymMiddle``)."""


ASYMMETRIC_BLOCKS: dict[type[nn.Module], type[AsymMiddle]] = {Bottleneck: AsymBottleneck,
                                                             XceptionBlock: AsymXceptionBlock}


class AsymFusionNet(FusionSegmenter):
    """Bidirectional fusion in the last block of each stage: the last bottleneck of layer1-4 of a ResNet (4 fusion
    points, strides 4-32: the reference code), the last unit of the entry, middle and exit flows of an Xception
    (3 fusion points, strides 8, 16, 16 at output stride 16). ``ops`` as ``AsymMiddle``'s.

    The Xception placement is our reading: the paper fuses "in multiple layers" of the DeepLabv3+ encoder for its
    Cityscapes row without saying which, and the reference code has no Cityscapes model. Its rule for the ResNets,
    one fusion point per stage at the stage's last block, carries over as one per flow at the flow's last unit; in
    an Xception unit the stride is the last conv's, so the fused middle conv runs before it (as the bottlenecks'
    stride-1 last block does)."""

    def __init__(
        self,
        spec: SegmentationBackbone,
        num_classes: int,
        modalities: Sequence[str],
        *,
        shuffle_groups: int = AsymFusionParams.shuffle_groups,
        shift_offsets: Sequence[Sequence[int]] = AsymFusionParams.shift_offsets,
        ops: tuple[str, ...] = ASYM_OPS,
        in_channels: int = 3,
        rcu_residual: str = AsymFusionParams.rcu_residual,
    ):
        if not ops or set(ops) - set(ASYM_OPS):
            raise ValueError(f"asymfusion ops must be a non-empty subset of {list(ASYM_OPS)}, got {list(ops)}")
        if len(modalities) < 2:
            raise ValueError(f"asymfusion needs at least 2 modalities, got {list(modalities)}")
        if shuffle_groups < 2:
            raise ValueError(f"asymfusion shuffle_groups must be >= 2, got {shuffle_groups}")
        offsets = tuple(tuple(int(v) for v in o) for o in shift_offsets)
        if not offsets or any(len(o) != 2 for o in offsets):
            raise ValueError(f"asymfusion shift_offsets must be a non-empty list of (dy, dx), got {shift_offsets}")
        layers = spec.layers if isinstance(spec, BackboneSpec) else ()  # an Xception unit strides after its middle
        short = [stage for stage, count in enumerate(layers, 1) if count < 2]
        if short:
            raise ValueError(f"asymfusion needs >= 2 blocks per stage (the fused block must have stride 1); "
                             f"stages {short} of layers {spec.layers} have fewer")

        def fusion_in_last_block(position, block: type[nn.Module], **kwargs) -> nn.Module:
            if position.index == position.count - 1:
                return ASYMMETRIC_BLOCKS[block](**kwargs, groups=shuffle_groups, offsets=offsets, ops=tuple(ops))
            return block(**kwargs)

        super().__init__(spec, num_classes, modalities, in_channels=in_channels, block_factory=fusion_in_last_block,
                         rcu_residual=rcu_residual)
