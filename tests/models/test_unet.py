"""The pix2pix U-Net: layer structure, the pix2pix parameter count, modal InstanceNorm and shared transposed convs."""

import pytest
import torch
from torch.testing import assert_close

from fusionlab.models import (
    TRANSLATION_BACKBONES,
    ModalInstanceNorm2d,
    SharedConvTranspose2d,
    UNetSpec,
    build,
    count_parameters,
    set_modality_loop,
)
from fusionlab.models.translation import TranslationNet


def pix2pix_unet_parameters(levels, base, in_channels, out_channels):
    """pix2pix's UnetGenerator with affine InstanceNorm (so every conv has a bias), from the layer formula.

    Down i (0-based): conv 4x4 ``c_in -> f_i`` (+ bias), affine norm (2 f_i) on all but the first and the last.
    Up (innermost first): transposed conv 4x4 ``f_inner (x2 with the skip) -> f_{inner-1}``, + bias, + norm but on
    the outermost (``2 f_0 -> out``). With BatchNorm, pix2pix drops every bias but the outermost up conv's.
    """
    f = [base * min(2**i, 8) for i in range(levels)]
    down = sum(16 * c_in * c_out + c_out for c_in, c_out in zip([in_channels, *f[:-1]], f, strict=True))
    down_norms = sum(2 * c for c in f[1:-1])
    up = 16 * f[-1] * f[-2] + f[-2] + 2 * f[-2]  # innermost: no skip
    for i in range(levels - 2, 0, -1):
        up += 16 * 2 * f[i] * f[i - 1] + f[i - 1] + 2 * f[i - 1]
    up += 16 * 2 * f[0] * out_channels + out_channels
    return down + down_norms + up


def test_pix2pix_unet_has_pix2pix_parameter_count():
    assert TRANSLATION_BACKBONES["pix2pix_unet"] == UNetSpec(levels=8, base=64)
    with torch.device("meta"):
        model = build("unimodal", backbone="pix2pix_unet", num_classes=3, modalities=["depth"], task="translation")
    generator = count_parameters(model.encoder) + count_parameters(model.decoder)
    assert generator == pix2pix_unet_parameters(8, 64, 3, 3)  # 54,419,459 (54,413,955 with BatchNorm)
    assert count_parameters(model) == generator + 1  # + alpha
    assert len(model.encoder.layers()) == len(model.decoder.layers()) == 8


def test_unet_mini_count_and_layers():
    model = build("unimodal", backbone="unet_mini", num_classes=3, modalities=["depth"], task="translation")
    assert count_parameters(model.encoder) + count_parameters(model.decoder) == pix2pix_unet_parameters(5, 16, 3, 3)
    normed = [name for name, m in model.named_modules() if isinstance(m, ModalInstanceNorm2d)]
    assert normed == [f"encoder.down{i}.norm" for i in range(2, 5)] + [f"decoder.up{i}.norm" for i in range(1, 5)]


def test_eight_levels_run_down_to_one_pixel():
    model = TranslationNet(UNetSpec(levels=8, base=4), 3, ["depth", "normal"]).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 3, 256, 256))
    assert out.branches.shape == (2, 1, 3, 256, 256)


def test_modal_instance_norm_is_one_affine_instance_norm_per_modality_slice():
    norm = ModalInstanceNorm2d(6, 3)
    with torch.no_grad():
        for m in norm.norms:
            m.weight.normal_()
            m.bias.normal_()
    x = torch.randn(3 * 2, 6, 5, 4)
    expected = torch.cat([n(part) for n, part in zip(norm.norms, x.chunk(3), strict=True)])
    assert_close(norm(x), expected)
    assert norm.gammas().shape == (3, 6) and torch.equal(norm.gammas()[1], norm.norms[1].weight)
    assert all(isinstance(n, torch.nn.InstanceNorm2d) and n.affine for n in norm.norms)


@pytest.mark.parametrize("name", ["cen", "attention"])
def test_batched_and_per_modality_loop_agree(name):
    model = build(name, backbone="unet_mini", num_classes=3, modalities=["depth", "normal", "shade"],
                  task="translation").eval()
    assert any(isinstance(m, SharedConvTranspose2d) for m in model.modules())
    x = torch.randn(3, 2, 3, 32, 32)
    with torch.no_grad():
        batched = model(x).branches
        set_modality_loop(model, True)
        looped = model(x).branches
    assert_close(batched, looped)
