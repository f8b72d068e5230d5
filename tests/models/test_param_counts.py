"""Parameter counts equal the papers' #Params (docs/models.md), counted on the meta device."""

import pytest
import torch

from fusionlab.models import build, summarize

# The papers' #Params (40 classes): counts of the reference implementations.
DESIGN_TABLE = {
    "resnet50": (99_104_105, 99_157_226),
    "resnet101": (118_096_233, 118_201_578),
    "resnet152": (133_739_881, 133_891_306),
}


@pytest.mark.parametrize("backbone", sorted(DESIGN_TABLE))
def test_counts_match_reference(backbone):
    unimodal, two_modalities = DESIGN_TABLE[backbone]
    kwargs = dict(backbone=backbone, num_classes=40, modalities=["rgb", "depth"])
    assert summarize("unimodal", **kwargs).parameters == unimodal
    assert summarize("cen", **kwargs).parameters == two_modalities
    assert summarize("asymfusion", **kwargs).parameters == two_modalities


def test_extra_modality_adds_exactly_one_set_of_bn_affine_parameters():
    kwargs = dict(backbone="resnet101", num_classes=40)
    two = summarize("cen", modalities=["rgb", "depth"], **kwargs).parameters
    three = summarize("cen", modalities=["rgb", "depth", "hha"], **kwargs).parameters
    one = summarize("unimodal", modalities=["rgb"], **kwargs).parameters
    assert three - two == two - one  # one BN copy (gamma + beta) and one alpha per modality


def test_counting_allocates_no_weights():
    with torch.device("meta"):
        model = build("cen", backbone="resnet152", num_classes=40, modalities=["rgb", "depth"])
    assert all(p.is_meta for p in model.parameters())
