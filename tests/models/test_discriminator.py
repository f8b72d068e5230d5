"""The 70x70 PatchGAN discriminator, conditioned on all input modalities."""

import torch

from fusionlab.models import PatchDiscriminator, build_discriminator, conditional_input, count_parameters


def test_receptive_field_is_70():
    disc = PatchDiscriminator(3).double()
    # InstanceNorm couples every pixel of a map through its statistics; the receptive field is the convs'.
    for i, layer in enumerate(disc.model):
        if isinstance(layer, torch.nn.InstanceNorm2d):
            disc.model[i] = torch.nn.Identity()
    x = torch.randn(1, 3, 256, 256, dtype=torch.float64, requires_grad=True)
    logits = disc(x)
    assert logits.shape == (1, 1, 30, 30)
    logits[0, 0, 15, 15].backward()
    touched = x.grad[0].abs().sum(0) > 0
    rows, cols = touched.any(1).nonzero().flatten(), touched.any(0).nonzero().flatten()
    assert int(rows[-1] - rows[0]) + 1 == 70 and int(cols[-1] - cols[0]) + 1 == 70


def test_layers_and_count_follow_pix2pix():
    disc = PatchDiscriminator(9)
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convs] == [
        (9, 64, 2), (64, 128, 2), (128, 256, 2), (256, 512, 1), (512, 1, 1)]
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in disc.modules()) == 3
    assert count_parameters(disc) == sum(16 * c.in_channels * c.out_channels + c.out_channels for c in convs)


def test_conditioned_on_all_inputs():
    disc = build_discriminator(num_modalities=3, out_channels=3, base=8)
    inputs, image = torch.randn(3, 2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    joined = conditional_input(inputs, image)
    assert disc.model[0].in_channels == 3 * 3 + 3 and joined.shape == (2, 12, 64, 64)
    assert torch.equal(joined[:, 3:6], inputs[1]) and torch.equal(joined[:, 9:], image)
    assert disc(joined).shape == (2, 1, 6, 6)
