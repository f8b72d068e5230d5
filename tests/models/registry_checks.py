"""The checks every registered segmentation model passes on every tiny backbone it runs on: the registry-driven tests
(``test_registry.py``, ``test_flops.py``) parametrise them over the registry, ``test_backbone_plugin.py`` runs them on
a backbone added in one new file."""

import pytest
import torch

from fusionlab.config import ConfigError, validate_config
from fusionlab.models import FusionModel, FusionOutput, build, min_modalities
from fusionlab.models.flops import _built_flops, sample_step_flops

MODALITY_SETS = {1: ["rgb"], 2: ["rgb", "depth"], 3: ["rgb", "depth", "hha"]}


def check_forward_backward(name: str, backbone: str, num_modalities: int, size: tuple[int, int] = (64, 48)) -> None:
    """Built, a forward on stacked modalities, a backward that reaches every parameter, a deterministic eval."""
    modalities = MODALITY_SETS[num_modalities]
    model = build(name, backbone=backbone, num_classes=7, modalities=modalities)
    assert isinstance(model, FusionModel)
    batch, (height, width) = 2, size
    x = torch.randn(num_modalities, batch, 3, height, width)
    out = model(x)
    assert isinstance(out, FusionOutput)
    assert out.branches.shape == (len(model.branch_names()), batch, 7, height // 4, width // 4)
    assert out.ensemble.shape == (batch, 7, height // 4, width // 4)
    loss = out.branches.square().mean() + out.ensemble.square().mean() + model.regularization_loss()
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters that got no gradient: {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())

    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
    assert torch.equal(first.ensemble, second.ensemble), "eval mode must be deterministic (no dropout)"


def check_step_flops(name: str, backbone: str) -> None:
    """A training step's FLOPs are counted (on the meta device, as the grid estimate counts them) and match the
    count on a real batch (exactly for the CNNs; a Mix Transformer's attention counts 0.4% more on meta)."""
    args = (name, backbone, 5, ("rgb", "depth"), (64, 64))
    on_meta = sample_step_flops(*args)
    assert on_meta == pytest.approx(_built_flops(*args, {}, "cpu", "segmentation", True), rel=0.01)
    assert on_meta > 0


def check_config(name: str, backbone: str) -> None:
    """The config accepts the model on the backbone with enough modalities, and refuses fewer naming the model, its
    minimum and the modalities given."""
    needed = min_modalities(name)
    tree = {"data": {"path": "data", "modalities": MODALITY_SETS[max(needed, 2)]},
            "model": {"name": name, "backbone": backbone}}
    config = validate_config(tree)
    assert (config.model.name, config.model.backbone) == (name, backbone)
    if needed > 1:
        with pytest.raises(ConfigError, match=rf"model {name} needs at least {needed} modalities.*\['rgb'\]"):
            validate_config({**tree, "data": {"path": "data", "modalities": ["rgb"]}})
