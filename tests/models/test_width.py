"""``model.width``: every backbone's channel widths times a multiplier, so a grid can compare models at equal parameter
or FLOP budgets (late fusion at CEN's parameter count, CEN at late fusion's)."""

import json

import pytest
import torch

from fusionlab.config import ConfigError, validate_config
from fusionlab.models import TASKS, build, list_models
from fusionlab.models.flops import sample_step_flops
from fusionlab.models.model_files import SPEC_FILE, load_model_dir, save_model_dir
from fusionlab.models.predictor import SegmentationPredictor
from tiny_backbones import tiny_backbone

MODALITIES = ["rgb", "depth"]


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("task,name", [(task, name) for task in TASKS for name in list_models(task=task)])
def test_every_model_scales_with_width_and_width_one_is_the_published_network(task, name):
    def made(**kwargs):
        return build(name, backbone=tiny_backbone(name, task), num_classes=3, modalities=MODALITIES, task=task,
                     **kwargs)

    default, narrow, one = made(), made(width=0.5), made(width=1.0)
    assert parameters(one) == parameters(default)
    # Convolutions dominate: parameters scale about as width squared (biases, alpha and the 1-channel heads do not).
    assert 0.2 < parameters(narrow) / parameters(default) < 0.35, name
    out = narrow(torch.randn(len(MODALITIES), 2, 3, 64, 64))
    assert torch.isfinite(out.ensemble).all()
    assert narrow.build_args.width == 0.5


def test_late_fusion_at_width_0_7_has_about_cens_parameters():
    cen = build("cen", backbone="resnet_mini", num_classes=5, modalities=MODALITIES)
    late = build("late_fusion", backbone="resnet_mini", num_classes=5, modalities=MODALITIES)
    narrow_late = build("late_fusion", backbone="resnet_mini", num_classes=5, modalities=MODALITIES, width=0.7)
    assert parameters(late) / parameters(cen) > 1.9, "late fusion has a network per modality"
    assert abs(parameters(narrow_late) / parameters(cen) - 1) < 0.1


def test_a_saved_narrow_model_rebuilds_at_its_width(tmp_path):
    model = build("cen", backbone="resnet_mini", num_classes=5, modalities=MODALITIES, width=0.75).eval()
    save_model_dir(SegmentationPredictor(model), tmp_path / "model")
    assert json.loads((tmp_path / "model" / SPEC_FILE).read_text())["model"]["width"] == 0.75
    loaded = load_model_dir(tmp_path / "model")
    assert parameters(loaded.model) == parameters(model)
    x = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), SegmentationPredictor(model)(x))


def test_width_reaches_the_built_model_and_its_flops_and_is_refused_with_pretrained_weights():
    tree = {"data": {"path": "data", "modalities": MODALITIES}, "model": {"name": "late_fusion", "width": 0.5}}
    config = validate_config(tree)
    kwargs = config.model.build_kwargs(2)
    assert kwargs["width"] == 0.5
    narrow = sample_step_flops("late_fusion", "resnet_mini", 5, ("rgb", "depth"), (64, 64),
                               json.dumps(kwargs, sort_keys=True))
    full = sample_step_flops("late_fusion", "resnet_mini", 5, ("rgb", "depth"), (64, 64), json.dumps({"width": 1.0}))
    assert 0.2 < narrow / full < 0.35
    with pytest.raises(ConfigError, match=r"model\.width 0\.5 would not fit them"):
        validate_config({**tree, "model": {**tree["model"], "pretrained": "resnet50.pth"}})
    with pytest.raises(ConfigError, match=r"model\.width: Input should be greater than 0"):
        validate_config({**tree, "model": {"name": "cen", "width": 0}})
