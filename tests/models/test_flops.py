"""FLOPs of a training step and MFU (fusionlab.models.flops): counted, consistent between devices, and inverse."""

import pytest
import torch
from registry_checks import check_step_flops

from fusionlab.models.flops import count_flops, device_hours, mfu, peak_tflops, sample_step_flops, step_flops
from tiny_backbones import tiny_pairs


def test_a_training_step_counts_backward_as_twice_the_forward():
    model = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4, requires_grad=True)
    forward = count_flops(lambda: model(x))
    assert forward == 2 * 2 * 4 * 3  # batch × in × out multiply-adds
    # backward: the input's gradient and the weight's gradient, each as costly as the forward matmul
    assert step_flops(model, x, loss=lambda m, out: out.sum()) == 3 * forward


@pytest.mark.parametrize(("name", "backbone", "task"), [
    ("cen", "resnet_mini", "segmentation"),  # BatchNorm, channel exchange
    ("asymfusion", "resnet_mini", "segmentation"),  # shuffle and shift between BatchNorms
    ("cen", "unet_mini", "translation"),  # InstanceNorm
])
def test_meta_device_count_matches_a_real_batch(name, backbone, task):
    """On meta the norms only copy their input (fusionlab.models.flops.shape_only_norms): the same count as real
    norms on a real batch."""
    args = (name, backbone, 5, ("rgb", "depth"), (64, 64))
    on_meta = sample_step_flops(*args, task=task)
    from fusionlab.models.flops import _built_flops

    on_cpu = _built_flops(*args, {}, "cpu", task, True)
    assert on_meta == on_cpu > 0
    assert sample_step_flops(name, backbone, 5, ("rgb", "depth"), (128, 128), task=task) == pytest.approx(
        4 * on_meta, rel=0.05)


@pytest.mark.parametrize(("name", "backbone"), tiny_pairs())
def test_every_models_step_is_counted_on_every_tiny_backbone_it_runs_on(name, backbone):
    """Registry-driven: what the grid estimate counts, for each model on each family, the same on meta as on CPU."""
    check_step_flops(name, backbone)


def test_mfu_and_device_hours_are_inverse():
    flops, peak, utilisation = 3.6e18, 312.0, 0.3
    hours = device_hours(flops, peak, utilisation)
    assert mfu(flops, hours * 3600, peak) == pytest.approx(utilisation)
    assert device_hours(2 * flops, peak, utilisation) == pytest.approx(2 * hours)


def test_unknown_device_has_no_peak():
    assert peak_tflops("NVIDIA H200") == 989.4 and peak_tflops("a toaster") is None
