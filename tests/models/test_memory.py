"""The training-memory estimate on the meta device against the tensors a real CPU forward pass saves."""

import pytest
import torch

from fusionlab.models import build
from fusionlab.models.memory import sample_training_memory


def saved_bytes_per_sample(name: str, backbone: str, modalities: list[str], size: tuple[int, int]) -> float:
    """What autograd really keeps for backward on the CPU: every saved tensor's storage, once."""
    model = build(name, backbone=backbone, num_classes=5, modalities=modalities).train()
    batch = 2
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(torch.randn(len(modalities), batch, 3, *size))
    return sum(storages.values()) / batch


@pytest.mark.parametrize(("name", "backbone"), [("cen", "resnet_mini"), ("asymfusion", "xception_mini"),
                                                ("late_fusion", "resnet_mini")])
def test_meta_estimate_is_within_two_percent_of_the_saved_tensors(name, backbone):
    modalities = ["rgb", "depth"]
    estimate = sample_training_memory(name, backbone, 5, tuple(modalities), (64, 96))
    real = saved_bytes_per_sample(name, backbone, modalities, (64, 96))
    assert estimate.activation_bytes_per_sample == pytest.approx(real, rel=0.02)
    with torch.device("meta"):
        parameters = sum(p.numel() for p in build(name, backbone=backbone, num_classes=5,
                                                  modalities=modalities).parameters())
    assert estimate.parameter_bytes == 4 * parameters


def test_total_is_the_optimisers_copies_of_the_weights_plus_the_batchs_activations():
    estimate = sample_training_memory("cen", "resnet_mini", 5, ("rgb", "depth"), (32, 32))
    sgd, adam = estimate.total_bytes(4, "sgd"), estimate.total_bytes(4, "adam")
    assert adam - sgd == estimate.parameter_bytes  # Adam keeps one more copy than SGD's momentum
    assert estimate.total_bytes(8, "sgd") - sgd == 4 * estimate.activation_bytes_per_sample
