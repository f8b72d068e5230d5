"""Batched-modality execution equals the per-modality loop on the same weights."""

import pytest
import torch
from torch.testing import assert_close

from fusionlab.models import build, set_modality_loop


@pytest.mark.parametrize("name", ["cen", "asymfusion", "shared_bn"])
def test_loop_and_batched_give_the_same_outputs_and_gradients(name):
    model = build(name, backbone="resnet_mini", num_classes=4, modalities=["rgb", "depth", "hha"])
    x = torch.randn(3, 2, 3, 64, 64)
    results = []
    for loop in (False, True):
        set_modality_loop(model, loop)
        torch.manual_seed(1)  # same dropout masks
        model.zero_grad()
        out = model(x)
        out.branches.square().mean().backward()
        results.append((out.branches.detach(), model.encoder.conv1.weight.grad.clone()))
    assert_close(results[0][0], results[1][0], rtol=1e-4, atol=1e-5)
    assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-5)
