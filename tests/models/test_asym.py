"""AsymFusion's channel shuffle and pixel shift: golden vectors, hand-computed cases, M >= 2, asymmetry."""

import numpy as np
import pytest
import torch

from fusionlab.models import build
from fusionlab.models.asym import channel_shuffle, kept_channels, pixel_shift, shift2d
from fusionlab.models.asymfusion import AsymBottleneck


def test_kept_channels_reference_rule():
    assert kept_channels(10) == 8  # g = 10 // 5 = 2, keep 4g
    assert kept_channels(64) == 48  # g = 12
    assert kept_channels(7) == 4


def test_matches_reference_golden_vectors(golden_dir):
    data = {k: torch.from_numpy(v) for k, v in np.load(golden_dir / "asym_shift_shuffle_m2.npz").items()}
    x = torch.cat([data["x0"], data["x1"]])
    keep = kept_channels(x.shape[1])
    shuffled = channel_shuffle(x, 2, keep).chunk(2)
    shifted = pixel_shift(x, keep).chunk(2)
    for m in range(2):
        assert torch.equal(shuffled[m], data[f"shuffle{m}"])
        assert torch.equal(shifted[m], data[f"shift{m}"])


def test_shift2d_directions_by_hand():
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)  # [[1,2,3],[4,5,6],[7,8,9]]
    down = torch.tensor([[0.0, 0, 0], [1, 2, 3], [4, 5, 6]])
    right = torch.tensor([[0.0, 1, 2], [0, 4, 5], [0, 7, 8]])
    left = torch.tensor([[2.0, 3, 0], [5, 6, 0], [8, 9, 0]])
    up = torch.tensor([[4.0, 5, 6], [7, 8, 9], [0, 0, 0]])
    assert torch.equal(shift2d(x, 1, 0)[0, 0], down)
    assert torch.equal(shift2d(x, 0, 1)[0, 0], right)
    assert torch.equal(shift2d(x, 0, -1)[0, 0], left)
    assert torch.equal(shift2d(x, -1, 0)[0, 0], up)
    assert torch.equal(shift2d(x, 2, 2)[0, 0], torch.tensor([[0.0, 0, 0], [0, 0, 0], [0, 0, 1]]))


def test_pixel_shift_groups_by_hand():
    # C = 5: g = 1, keep 4; channel k is shifted by the k-th reference offset (down, right, left, up); channel 4 -> 0.
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3).repeat(1, 5, 1, 1)
    out = pixel_shift(x, kept_channels(5))[0]
    for channel, (dy, dx) in enumerate([(1, 0), (0, 1), (0, -1), (-1, 0)]):
        assert torch.equal(out[channel], shift2d(x[:, :1], dy, dx)[0, 0])
    assert torch.equal(out[4], torch.zeros(3, 3))
    assert out[0, 0].sum() == 0 and torch.equal(out[0, 1], torch.tensor([1.0, 2, 3]))


def test_channel_shuffle_by_hand_m2():
    a = torch.full((1, 5, 1, 1), 1.0)
    b = torch.full((1, 5, 1, 1), 2.0)
    out = channel_shuffle(torch.cat([a, b]), 2, keep=4).flatten().tolist()
    assert out == [1, 1, 1, 1, 2] + [2, 2, 2, 2, 1]


def test_channel_shuffle_m3_takes_from_others_cyclically():
    # C = 10, keep 4: 6 taken channels in 2 chunks of 3; chunk j of branch m from branch (m + 1 + j) % 3.
    x = torch.cat([torch.full((1, 10, 1, 1), float(m)) for m in range(3)])
    out = channel_shuffle(x, 3, keep=4).view(3, 10).tolist()
    assert out[0] == [0] * 4 + [1] * 3 + [2] * 3
    assert out[1] == [1] * 4 + [2] * 3 + [0] * 3
    assert out[2] == [2] * 4 + [0] * 3 + [1] * 3


def test_fusion_is_asymmetric():
    block = AsymBottleneck(64, 16, 2, groups=5, offsets=((1, 0), (0, 1), (0, -1), (-1, 0))).eval()
    x0, x1 = torch.randn(2, 16, 8, 8), torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        forward = block.middle(torch.cat([x0, x1])).chunk(2)
        swapped = block.middle(torch.cat([x1, x0])).chunk(2)
    # Branch 0's fused features from (x0, x1) differ from those from (x1, x0); a sum or concat would not.
    assert not torch.allclose(forward[0], swapped[0])


def test_fusion_points_are_last_block_of_each_stage():
    model = build("asymfusion", backbone="resnet_mini", num_classes=5, modalities=["rgb", "depth"])
    assert model.fusion_points() == [f"encoder.layer{s}.1" for s in range(1, 5)]


def test_configurable_groups_and_offsets_change_the_operation():
    x = torch.randn(2, 12, 4, 4)
    default = pixel_shift(x, kept_channels(12))
    custom = pixel_shift(x, kept_channels(12, groups=3), offsets=((2, 0), (0, -2)))
    assert kept_channels(12, groups=3) == 8
    assert not torch.equal(default, custom)
    assert torch.equal(custom[:, :4], shift2d(x[:, :4], 2, 0))


@pytest.mark.parametrize("bad", [{"shuffle_groups": 1}, {"shift_offsets": []}, {"shift_offsets": [(1, 0, 0)]}])
def test_bad_parameters_are_rejected(bad):
    with pytest.raises(ValueError, match="asymfusion"):
        build("asymfusion", backbone="resnet_mini", num_classes=5, modalities=["rgb", "depth"], **bad)
