"""AsymFusion (Wang et al., "Deep Multimodal Feature Representation with Asymmetric Multi-layer Fusion", MM 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .asym import channel_shuffle, kept_channels, pixel_shift
from .modal import mean_of_others, split_modalities
from .params import AsymFusionParams
from .resnet import BackboneSpec, BlockPosition, Bottleneck
from .segmenter import FusionSegmenter

# The fusion operations a block applies: both (the paper), or one of them (its ablations).
ASYM_OPS = ("shuffle", "shift")


class AsymBottleneck(Bottleneck):
    """``conv1 -> bn1 -> relu -> shuffle -> conv2 -> bn2 -> relu -> (+ others' shift) -> shuffle -> conv3``;
    ``ops`` drops the shuffles (``("shift",)``) or the shift (``("shuffle",)``)."""

    is_fusion_point = True

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
        out = F.relu(self.bn2(self.conv2(out)))
        if shifted is not None:
            out = out + mean_of_others(split_modalities(shifted, self.num_modalities)).flatten(0, 1)
        return channel_shuffle(out, self.num_modalities, keep) if shuffle else out


class AsymFusionNet(FusionSegmenter):
    """Bidirectional fusion in the last bottleneck of each stage (4 fusion points, strides 4-32); ``ops`` as
    ``AsymBottleneck``'s."""

    def __init__(
        self,
        spec: BackboneSpec,
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
        short = [stage for stage, count in enumerate(spec.layers, 1) if count < 2]
        if short:
            raise ValueError(f"asymfusion needs >= 2 blocks per stage (the fused block must have stride 1); "
                             f"stages {short} of layers {spec.layers} have fewer")

        def fusion_in_last_block(position: BlockPosition, **kwargs) -> Bottleneck:
            if position.index == position.count - 1:
                return AsymBottleneck(**kwargs, groups=shuffle_groups, offsets=offsets, ops=tuple(ops))
            return Bottleneck(**kwargs)

        super().__init__(spec, num_classes, modalities, in_channels=in_channels, block_factory=fusion_in_last_block,
                         rcu_residual=rcu_residual)
