"""The servable model upsamples its 1/4-resolution logits bilinearly or, as the references score, bicubically."""

import pytest
import torch
import torch.nn.functional as F

from fusionlab.models import build
from fusionlab.models.predictor import SegmentationPredictor


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build("cen", backbone="resnet_mini", num_classes=5, modalities=["rgb", "depth"]).eval()


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_logits_are_upsampled_with_the_chosen_kernel(model, mode):
    x = torch.randn(2, 2, 3, 40, 56)  # [B, M, C, H, W]
    with torch.no_grad():
        got = SegmentationPredictor(model, upsample=mode)(x)
        ensemble = model(x.transpose(0, 1)).ensemble
    torch.testing.assert_close(got, F.interpolate(ensemble, size=(40, 56), mode=mode, align_corners=False))


def test_the_two_kernels_give_different_logits_and_an_unknown_one_is_refused(model):
    x = torch.randn(1, 2, 3, 40, 56)
    with torch.no_grad():
        bilinear = SegmentationPredictor(model)(x)
        bicubic = SegmentationPredictor(model, upsample="bicubic")(x)
    assert not torch.allclose(bilinear, bicubic)
    with pytest.raises(ValueError, match="upsample must be one of"):
        SegmentationPredictor(model, upsample="nearest")
