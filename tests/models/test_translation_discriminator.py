"""The per-branch PatchGAN (the CEN translation reference's discriminator): its pairs and its affine norms."""

import torch

from fusionlab.models.discriminator import PatchDiscriminator, branch_pairs, build_branch_discriminator


def test_branch_pairs_put_each_branchs_input_beside_its_image():
    inputs, images = torch.randn(3, 2, 3, 8, 8), torch.randn(3, 2, 3, 8, 8)
    pairs = branch_pairs(inputs, images)
    assert pairs.shape == (3 * 2, 6, 8, 8)
    assert torch.equal(pairs[2 * 2 + 1, :3], inputs[2, 1]) and torch.equal(pairs[2 * 2 + 1, 3:], images[2, 1])
    target = torch.randn(2, 3, 8, 8)
    beside_target = branch_pairs(inputs, target)
    assert all(torch.equal(beside_target[m * 2 + b, 3:], target[b]) for m in range(3) for b in range(2))
    assert torch.equal(beside_target[:, :3], inputs.flatten(0, 1))


def test_the_branch_discriminator_is_the_patchgan_with_affine_norms():
    disc = build_branch_discriminator(3, 3, base=8)
    norms = [m for m in disc.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert disc.model[0].in_channels == 6 and len(norms) == 3
    assert all(norm.affine and not norm.track_running_stats for norm in norms)
    plain = PatchDiscriminator(6, base=8)
    assert [tuple(p.shape) for n, p in disc.named_parameters() if "model.3" not in n and "model.6" not in n
            and "model.9" not in n] == [tuple(p.shape) for p in plain.parameters()], "the same convs"
    assert disc(torch.randn(4, 6, 64, 64)).shape == (4, 1, 6, 6)
