"""A small fixed random conv net as a stand-in feature extractor when the Inception weights are absent.

Its FID/KID values are only comparable with other values from the same extractor (same name) on the same kind of
data: they are for CPU demos, smoke runs and tests, never for a paper table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionlab.fid.inception import prepare_images

LOCAL_NAME = "local-random-conv-v1 (not comparable to published FID)"
_SEED = 20180130  # fixed forever: changing it (or the layers) changes every value, so it would be a new name
_CHANNELS = (3, 32, 48, 64, 64)
_INPUT_SIZE = 64
MIN_SIZE = 16


class LocalFeatures(nn.Module):
    """4 random 3x3 stride-2 convs + ReLU, then per-channel mean and std over space: `[N, 3, H, W]` -> `[N, 128]`.

    Images (any size >= 16 px, in [0, 1]) are resized to 64x64 (bilinear, antialiased) so that sets of different
    resolutions are compared on the same footing. The weights come from a private `torch.Generator` with a fixed
    seed, so every instance is identical and the global RNG is neither used nor disturbed.
    """

    name = LOCAL_NAME
    feature_dim = 2 * _CHANNELS[-1]

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(_SEED)
        for i, (c_in, c_out) in enumerate(zip(_CHANNELS[:-1], _CHANNELS[1:], strict=True)):
            fan_in = c_in * 9
            weight = torch.randn(c_out, c_in, 3, 3, generator=gen) * (2.0 / fan_in) ** 0.5  # He init
            bias = 0.1 * torch.randn(c_out, generator=gen)
            self.register_buffer(f"weight{i}", weight)
            self.register_buffer(f"bias{i}", bias)
        self.eval()

    def features(self, images: Tensor) -> Tensor:
        x = prepare_images(images, min_size=MIN_SIZE).to(self.weight0.device)
        x = F.interpolate(x, size=(_INPUT_SIZE, _INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        x = 2 * x - 1
        for i in range(len(_CHANNELS) - 1):
            x = F.relu(F.conv2d(x, getattr(self, f"weight{i}"), getattr(self, f"bias{i}"), stride=2, padding=1))
        flat = x.flatten(2)
        return torch.cat([flat.mean(-1), flat.std(-1, unbiased=False)], 1)

    forward = features
