"""Whole-network parity with the references: the golden CEN and AsymFusion RefineNets (weights in the reference's
naming, rebuilt by tests/data/golden/README.md's rule) mapped by the importer's own code match all three outputs."""

import pytest
import torch

from fusionlab.checkpoint_import import build_reference_model
from fusionlab.models import build
from fusionlab.models.reference_checkpoint import load_reference_state
from fusionlab.models.reference_names import fusionlab_name, map_reference_state, reference_name
from golden_weights import Golden

pytestmark = pytest.mark.slow  # four forwards of an 89M-parameter network at 64x96 (about 30 s on 2 cores)

FILES = {"cen": "cen_refinenet_m2.npz", "asymfusion": "asym_refinenet_m2.npz"}
OUTPUTS = ("y_rgb", "y_depth", "y_ensemble")


@pytest.fixture(scope="module", params=sorted(FILES))
def golden(request, golden_dir):
    return request.param, Golden(golden_dir / FILES[request.param])


@pytest.fixture(scope="module")
def reference_model(golden):
    """Built with the reference recipe (the importer's constructor) and the file's threshold, weights loaded."""
    name, data = golden
    model = build_reference_model(name, data.spec, data.num_classes, ["rgb", "depth"], threshold=data.threshold)
    load_reference_state(model, data.reference_state, str(data.path), data.spec)
    return model


def _outputs(model, golden: Golden) -> dict[str, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        out = model(golden.inputs())
    return {"y_rgb": out.branches[0], "y_depth": out.branches[1], "y_ensemble": out.ensemble}


def test_the_thresholds_are_the_references(golden, reference_model):
    name, data = golden
    assert data.threshold == (0.02 if name == "cen" else 0.0)  # AsymFusion has no exchange
    if name == "cen":
        assert reference_model.threshold == data.threshold


def test_names_map_one_to_one_both_ways(golden, reference_model):
    _, data = golden
    target = reference_model.state_dict()
    mapped = [fusionlab_name(key) for key in data.names]
    assert None not in mapped
    assert len(set(mapped)) == len(mapped) == len(target)
    assert set(mapped) == set(target)
    assert all(reference_name(fusionlab_name(key)) == key for key in data.names)
    assert all(tuple(target[ours].shape) == shape for ours, shape in zip(mapped, data.shapes, strict=True))


def test_optional_counters_keep_the_models(golden, reference_model):
    _, data = golden
    target = reference_model.state_dict()
    without = {key: value for key, value in data.reference_state.items() if not key.endswith("num_batches_tracked")}
    mapped = map_reference_state(without, target)
    assert set(mapped) == set(target)
    assert all(mapped[key] is target[key] for key in target if key.endswith("num_batches_tracked"))


def test_the_reference_recipe_matches_every_output(golden, reference_model):
    _, data = golden
    ours = _outputs(reference_model, data)
    for key in OUTPUTS:
        torch.testing.assert_close(ours[key], data.output(key), rtol=1e-5, atol=1e-5, msg=key)


def test_the_pre_activation_rcu_does_not_match(golden):
    """Light-Weight RefineNet as published (the residual is x, not relu(x)) is another function: the switch matters."""
    name, data = golden
    kwargs = {"threshold": data.threshold} if name == "cen" else {}
    model = build(name, backbone=data.spec, num_classes=data.num_classes, modalities=["rgb", "depth"],
                  rcu_residual="pre_activation", **kwargs)
    load_reference_state(model, data.reference_state, str(data.path), data.spec)
    ours = _outputs(model, data)
    for key in OUTPUTS:
        assert (ours[key] - data.output(key)).abs().max() > 1e-2, key
