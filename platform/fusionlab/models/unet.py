"""The pix2pix U-Net generator (Isola et al., CVPR 2017), multimodal: shared convs, affine InstanceNorm per modality.

``levels`` down layers of conv 4x4 stride 2 with ``base * min(2**i, 8)`` filters (i = 0..levels-1); LeakyReLU(0.2)
before every down conv but the first; a norm after every down conv but the first and the last (innermost). The up
path mirrors it from the innermost: ReLU -> ConvTranspose 4x4 stride 2 -> norm (none on the outermost), dropout 0.5
on the three innermost up layers (the paper's "CD512-CD1024-CD1024" and the CEN translation reference; the PyTorch
pix2pix port shifts them one layer out), skip connections by concatenation ``[up, skip]``, ``tanh`` output. Convs
have biases, as pix2pix with InstanceNorm and the CEN reference. Module names follow the CEN reference
(``conv1..8``/``deconv1..8``): ``encoder.down1..down<levels>`` (outermost first) and ``decoder.up1..up<levels>``
(innermost first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .backbone_registry import get_backbone
from .modal import ModalInstanceNorm2d, SharedConv2d, SharedConvTranspose2d

DROPOUT_LAYERS = 3  # innermost up layers with dropout 0.5


@dataclass(frozen=True)
class UNetSpec:
    levels: int  # down-sampling steps; input H and W must be divisible by 2**levels
    base: int = 64  # filters of the outermost layer

    def scaled(self, width: float) -> UNetSpec:
        """The same depth with ``base`` (so every layer's filters) times ``width`` (rounded, at least 1)."""
        return UNetSpec(self.levels, max(1, round(self.base * width)))

    def filters(self, index: int) -> int:
        """Output channels of down layer ``index`` (0 = outermost): ``base * min(2**index, 8)``."""
        return self.base * min(2**index, 8)


def get_translation_backbone(name: str | UNetSpec) -> UNetSpec:
    """A named U-Net (``models/backbones/unet.py``), or ``name`` itself when it is a UNetSpec (a scaled one:
    ``model.width``)."""
    return get_backbone(name, task="translation")


class LayerPosition(NamedTuple):
    index: int  # 1-based, outermost first (the reference's conv1..conv8)
    count: int  # levels

    @property
    def has_norm(self) -> bool:
        return 1 < self.index < self.count


class DownLayer(nn.Module):
    """``[LeakyReLU] -> conv 4x4 s2 -> [norm -> fuse]``; ``fuse`` is where the fusion variants hook in."""

    is_fusion_point = False

    def __init__(self, in_channels: int, out_channels: int, num_modalities: int, *, activation: bool, norm: bool):
        super().__init__()
        self.num_modalities = num_modalities
        self.activation = activation
        self.conv = SharedConv2d(in_channels, out_channels, 4, stride=2, padding=1, num_modalities=num_modalities)
        self.norm = ModalInstanceNorm2d(out_channels, num_modalities) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(F.leaky_relu(x, 0.2) if self.activation else x)
        return out if self.norm is None else self.fuse(self.norm(out))

    def fuse(self, out: torch.Tensor) -> torch.Tensor:
        return out


class UpLayer(nn.Module):
    """``ReLU -> transposed conv 4x4 s2 -> [norm] -> [dropout 0.5]``."""

    def __init__(self, in_channels: int, out_channels: int, num_modalities: int, *, norm: bool, dropout: bool):
        super().__init__()
        self.conv = SharedConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1,
                                          num_modalities=num_modalities)
        self.norm = ModalInstanceNorm2d(out_channels, num_modalities) if norm else None
        self.dropout = nn.Dropout(0.5) if dropout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(F.relu(x))
        if self.norm is not None:
            out = self.norm(out)
        return out if self.dropout is None else self.dropout(out)


LayerFactory = Callable[..., DownLayer]  # (position, in_channels=, out_channels=, num_modalities=, activation=, norm=)


def plain_layer(position: LayerPosition, **kwargs) -> DownLayer:
    return DownLayer(**kwargs)


class UNetEncoder(nn.Module):
    """The down path on the stacked modalities; returns every layer's output (the skips), outermost first."""

    def __init__(self, spec: UNetSpec, num_modalities: int, in_channels: int = 3,
                 layer_factory: LayerFactory = plain_layer):
        super().__init__()
        if spec.levels < 2:
            raise ValueError(f"a U-Net needs at least 2 levels, got {spec.levels}")
        self.spec = spec
        channels = in_channels
        for i in range(spec.levels):
            position = LayerPosition(i + 1, spec.levels)
            layer = layer_factory(position, in_channels=channels, out_channels=spec.filters(i),
                                  num_modalities=num_modalities, activation=i > 0, norm=position.has_norm)
            setattr(self, f"down{i + 1}", layer)
            channels = spec.filters(i)

    def layers(self) -> list[DownLayer]:
        return [getattr(self, f"down{i + 1}") for i in range(self.spec.levels)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for layer in self.layers():
            x = layer(x)
            features.append(x)
        return features


class UNetDecoder(nn.Module):
    """The up path: up1 takes the innermost features, every later up layer ``[previous up, skip]``; tanh output."""

    def __init__(self, spec: UNetSpec, num_modalities: int, out_channels: int):
        super().__init__()
        self.spec = spec
        levels = spec.levels
        for k in range(levels):
            inner = levels - 1 - k  # the down layer whose output this up layer reads (with the previous up's)
            in_channels = spec.filters(inner) * (1 if k == 0 else 2)
            outermost = k == levels - 1
            layer = UpLayer(in_channels, out_channels if outermost else spec.filters(inner - 1), num_modalities,
                            norm=not outermost, dropout=not outermost and k < DROPOUT_LAYERS)
            setattr(self, f"up{k + 1}", layer)

    def layers(self) -> list[UpLayer]:
        return [getattr(self, f"up{k + 1}") for k in range(self.spec.levels)]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        skips = features[::-1]
        out = skips[0]
        for k, layer in enumerate(self.layers()):
            out = layer(out if k == 0 else torch.cat([out, skips[k]], dim=1))
        return torch.tanh(out)


def init_pix2pix_(module: nn.Module, std: float = 0.02) -> None:
    """pix2pix's initialisation: conv weights N(0, 0.02), conv biases 0 (norms keep gamma 1, beta 0)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
