"""Multi-scale and flip inference (fusionlab.models.multiscale) against answers worked out by hand."""

import pytest
import torch
from torch import nn

from fusionlab.models.multiscale import MultiScalePredictor, check_scales, protocol_label


class SizeLogits(nn.Module):
    """Logits that say how large the input was: class k's logit is (k + 1) x the input's pixel count, everywhere."""

    num_classes = 2

    def forward(self, x):
        batch, height, width = x.shape[0], *x.shape[-2:]
        area = float(height * width)
        return torch.stack([torch.full((batch, height, width), (k + 1) * area) for k in range(self.num_classes)], 1)


class ColumnLogits(nn.Module):
    """Class 0's logit is the column's position w / W (whatever the input shows), class 1's a constant 0.47."""

    num_classes = 2

    def forward(self, x):
        batch, height, width = x.shape[0], *x.shape[-2:]
        ramp = (torch.arange(width, dtype=torch.float32) / width).expand(batch, height, width)
        return torch.stack([ramp, torch.full_like(ramp, 0.47)], 1)


def inputs(height=8, width=12):
    return torch.randn(2, 2, 3, height, width)  # [B, M, C, H, W]


def test_each_scale_runs_at_its_rounded_size_and_the_logits_are_averaged_at_full_resolution():
    x = inputs(8, 12)
    averaged = MultiScalePredictor(SizeLogits(), scales=(0.5, 1.0, 1.5))(x)
    # sizes (4, 6), (8, 12), (12, 18): 24, 96 and 216 pixels; constant maps resize to themselves
    assert averaged.shape == (2, 2, 8, 12)
    assert torch.allclose(averaged[:, 0], torch.full((2, 8, 12), (24 + 96 + 216) / 3))
    assert torch.allclose(averaged[:, 1], torch.full((2, 8, 12), 2 * (24 + 96 + 216) / 3))
    rounded = MultiScalePredictor(SizeLogits(), scales=(0.75,))(inputs(5, 5))  # 3.75 -> 4
    assert torch.allclose(rounded[:, 0], torch.full((2, 5, 5), 16.0))


def test_a_flip_is_mirrored_back_before_the_average():
    x = inputs(4, 10)
    plain = MultiScalePredictor(ColumnLogits())(x)
    assert plain.argmax(1)[0, 0].tolist() == [1] * 5 + [0] * 5  # w / 10 > 0.47 from w = 5
    flipped = MultiScalePredictor(ColumnLogits(), flip=True)(x)
    # column w: (w / W + (W - 1 - w) / W) / 2 = (W - 1) / (2 W) = 0.45, below 0.47 everywhere
    assert torch.allclose(flipped[:, 0], torch.full((2, 4, 10), 9 / 20))
    assert (flipped.argmax(1) == 1).all()


def test_single_scale_is_the_predictor_itself():
    predictor = nn.Sequential(nn.Flatten(1, 2), nn.Conv2d(6, 3, 3, padding=1))
    x = inputs()
    assert torch.equal(MultiScalePredictor(predictor)(x), predictor(x))


def test_scales_are_checked_and_the_protocol_is_named():
    for bad in ([], [0.5, 0], [-1], [1.0, 4.5], [1e9], [float("inf")], [float("nan")]):
        with pytest.raises(ValueError, match="one or more scales|out of bounds"):
            check_scales(bad)
    assert check_scales([0.5, 4]) == (0.5, 4.0)  # the bound itself is allowed
    assert protocol_label((1.0,), False) == "single-scale"
    assert protocol_label((0.5, 1.0, 1.5), True) == "multi-scale 0.5,1,1.5 + flip"
    assert protocol_label((1.0,), True) == "multi-scale 1 + flip"
