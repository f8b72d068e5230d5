"""The pix2pix 70x70 PatchGAN discriminator, conditioned on all input modalities (not in the model registry).

``conv4 s2 64 -> LReLU; conv4 s2 128 -> norm -> LReLU; conv4 s2 256 -> norm -> LReLU; conv4 s1 512 -> norm -> LReLU;
conv4 s1 1`` (logits; the loss applies the sigmoid). The norm is InstanceNorm (not affine, no running statistics):
each judged image is normalised on its own, so a batch of real and a batch of fake images are judged alike
whatever else is in the batch (BatchNorm would mix their statistics). Convs have biases, as pix2pix's with
InstanceNorm. A plain (single-branch) network: the judged image is one tensor, not one per modality.
"""

from __future__ import annotations

import torch
from torch import nn

from .unet import init_pix2pix_


class PatchDiscriminator(nn.Module):
    """``layers`` stride-2 convs (3: the 70x70 PatchGAN), one stride-1 conv, a 1-channel stride-1 logit conv."""

    def __init__(self, in_channels: int, base: int = 64, layers: int = 3):
        super().__init__()
        if layers < 1:
            raise ValueError(f"PatchDiscriminator needs layers >= 1, got {layers}")
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, base, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        channels = base
        for n in range(1, layers + 1):
            out = base * min(2**n, 8)
            stride = 2 if n < layers else 1
            blocks += [nn.Conv2d(channels, out, 4, stride=stride, padding=1), nn.InstanceNorm2d(out),
                       nn.LeakyReLU(0.2)]
            channels = out
        blocks.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*blocks)
        init_pix2pix_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, in_channels, H, W]`` -> patch logits ``[B, 1, h, w]``."""
        return self.model(x)


def conditional_input(inputs: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """The discriminator's input: the modalities ``[M, B, C, H, W]`` concatenated along channels with ``image``."""
    return torch.cat([inputs.transpose(0, 1).flatten(1, 2), image], dim=1)


def build_discriminator(num_modalities: int, out_channels: int, base: int = 64, *, in_channels: int = 3,
                        layers: int = 3) -> PatchDiscriminator:
    """A PatchGAN judging ``image`` given all inputs: ``num_modalities * in_channels + out_channels`` channels."""
    return PatchDiscriminator(num_modalities * in_channels + out_channels, base=base, layers=layers)
