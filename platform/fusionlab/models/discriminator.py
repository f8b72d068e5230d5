"""The pix2pix 70x70 PatchGAN discriminator (not in the model registry), and the pairs it judges.

``conv4 s2 64 -> LReLU; conv4 s2 128 -> norm -> LReLU; conv4 s2 256 -> norm -> LReLU; conv4 s1 512 -> norm -> LReLU;
conv4 s1 1`` (logits; the loss applies the sigmoid). The norm is InstanceNorm without running statistics: each judged
image is normalised on its own, so a batch of real and a batch of fake images are judged alike whatever else is in
the batch (BatchNorm would mix their statistics). Convs have biases, as pix2pix's with InstanceNorm. A plain
(single-branch) network: the judged pair is one tensor, not one per modality.

Two conditionings (``train.gan.discriminators``):
- ``shared``: all input modalities beside the image (``conditional_input``), for every output and the ensemble;
- ``per_branch``: the CEN translation reference's ``Discriminator(6, 64, 1)``: one network whose weights every branch
  shares, judging each branch's own input beside that branch's image (``branch_pairs``); its norms are affine, as the
  reference's ``InstanceNorm2d(affine=True)``.
"""

from __future__ import annotations

import torch
from torch import nn

from .unet import init_pix2pix_


class PatchDiscriminator(nn.Module):
    """``layers`` stride-2 convs (3: the 70x70 PatchGAN), one stride-1 conv, a 1-channel stride-1 logit conv."""

    def __init__(self, in_channels: int, base: int = 64, layers: int = 3, *, affine: bool = False):
        super().__init__()
        if layers < 1:
            raise ValueError(f"PatchDiscriminator needs layers >= 1, got {layers}")
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, base, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        channels = base
        for n in range(1, layers + 1):
            out = base * min(2**n, 8)
            stride = 2 if n < layers else 1
            blocks += [nn.Conv2d(channels, out, 4, stride=stride, padding=1), nn.InstanceNorm2d(out, affine=affine),
                       nn.LeakyReLU(0.2)]
            channels = out
        blocks.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*blocks)
        init_pix2pix_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, in_channels, H, W]`` -> patch logits ``[B, 1, h, w]``."""
        return self.model(x)


def conditional_input(inputs: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """The shared discriminator's input: the modalities ``[M, B, C, H, W]`` concatenated along channels with
    ``image`` ``[B, C', H, W]``."""
    return torch.cat([inputs.transpose(0, 1).flatten(1, 2), image], dim=1)


def branch_pairs(branch_inputs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The per-branch discriminator's input: branch m's input ``[M', B, C, H, W]`` beside its image (``images``
    ``[M', B, C', H, W]``, or one ``[B, C', H, W]`` beside every branch), branch-major: ``[M'*B, C+C', H, W]``."""
    if images.dim() == 4:
        images = images.unsqueeze(0).expand(branch_inputs.shape[0], *images.shape)
    return torch.cat([branch_inputs, images], dim=2).flatten(0, 1)


def build_discriminator(num_modalities: int, out_channels: int, base: int = 64, *, in_channels: int = 3,
                        layers: int = 3) -> PatchDiscriminator:
    """A PatchGAN judging ``image`` given all inputs: ``num_modalities * in_channels + out_channels`` channels."""
    return PatchDiscriminator(num_modalities * in_channels + out_channels, base=base, layers=layers)


def build_branch_discriminator(branch_channels: int, out_channels: int, base: int = 64, *,
                               layers: int = 3) -> PatchDiscriminator:
    """The reference's per-branch PatchGAN: ``branch_channels + out_channels`` input channels, affine norms."""
    return PatchDiscriminator(branch_channels + out_channels, base=base, layers=layers, affine=True)
