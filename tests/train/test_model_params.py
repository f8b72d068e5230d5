"""``model.params``: validated against the model's params class for its task, every default explicit, old keys
refused with where they went; the translation CEN defaults reachable from a config, --set and a search space."""

import pytest

from fusionlab.config import ConfigError, apply_overrides, validate_config
from fusionlab.models import TASKS, build, list_models
from fusionlab.models.params import CENParams
from tiny_backbones import tiny_backbone

BACKBONES = {"segmentation": "resnet_mini", "translation": "unet_mini"}
MODALITIES = ["rgb", "depth"]


def tree(task="segmentation", **model):
    backbone = tiny_backbone(model["name"], task) if "name" in model else BACKBONES[task]
    return {"data": {"path": "data", "modalities": MODALITIES}, "model": {"backbone": backbone, **model}}


def built(config):
    task = "translation" if config.model.backbone == BACKBONES["translation"] else "segmentation"
    return build(config.model.name, backbone=config.model.backbone, num_classes=3, modalities=MODALITIES, task=task,
                 **config.model.build_kwargs(len(MODALITIES)))


@pytest.mark.parametrize("task,name", [(task, name) for task in TASKS for name in list_models(task=task)])
def test_every_model_builds_from_a_config_without_params_and_records_every_default(task, name):
    config = validate_config(tree(task, name=name))
    from fusionlab.models.registry import params_class

    assert set(config.model.params) == set(params_class(name, task).config_keys())
    assert {f"model.params.{key}" for key in config.model.params} <= set(config.flat())
    assert built(config).build_args.name == name


def test_a_translation_cen_without_params_gets_the_translation_references_lambda_and_threshold():
    model = built(validate_config(tree("translation", name="cen")))
    assert model.l1_lambda == 1e-3 and model.threshold == 1e-2
    assert {layer.threshold for layer in model.modules() if hasattr(layer, "portion")} == {1e-2}


def test_a_segmentation_cen_without_params_gets_its_own_defaults():
    config = validate_config(tree(name="cen"))
    model = built(config)
    assert model.threshold == CENParams.threshold == 2e-2
    assert model.l1_lambda == pytest.approx(3 * 2e-4)  # the reference's 2e-4 per output, added once for M = 2
    assert config.flat()["model.params.lambda"] == model.l1_lambda == config.flat()["model.params.effective_lambda"]


def test_translation_defaults_overridable_from_set_and_a_search_space():
    overridden = validate_config(apply_overrides(tree("translation", name="cen"),
                                                 ["model.params.lambda=5e-3", "model.params.threshold=0.03"]))
    assert (built(overridden).l1_lambda, built(overridden).threshold) == (5e-3, 0.03)
    searched = tree("translation", name="cen")
    searched["search"] = {"space": {"model.params.lambda": {"type": "loguniform", "low": 1e-4, "high": 1e-2}},
                          "metric": "val/fid", "mode": "min"}
    config = validate_config(searched)
    assert config.model.params["lambda"] == 1e-3 and "model.params.lambda" in config.search.space
    searched["search"]["space"]["model.params.portion"] = {"type": "uniform", "low": 0.1, "high": 0.9}
    with pytest.raises(ConfigError, match=r"search\.space\.model\.params\.portion must stay within \(0, 1/M\]"):
        validate_config(searched)


@pytest.mark.parametrize("params,message", [
    ({"lamda": 1e-3}, r"model\.params\.lamda: unknown key"),
    ({"threshold": "high"}, r"model\.params\.threshold: Input should be a valid number.*'high'"),
    ({"portion": True}, r"model\.params\.portion: expected a number, not a boolean"),
    ({"sparsity": "l2"}, r"model\.params\.sparsity: Input should be 'loss' or 'proximal'"),
    ({"threshold": -1}, r"model\.params\.threshold: Input should be greater than or equal to 0"),
    ({"rcu_residual": "post_activation"}, r"model\.params\.rcu_residual: unknown key"),  # no RefineNet here
])
def test_unknown_and_ill_typed_params_are_refused_with_the_key(params, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(tree("translation", name="cen", params=params))


def test_asymfusion_unimodal_and_random_exchange_params_are_checked():
    with pytest.raises(ConfigError, match=r"model\.params\.fraction must be in \(0, 1/M\] = \(0, 0\.5\]"):
        validate_config(tree(name="cen_random_exchange", params={"fraction": 0.6}))
    with pytest.raises(ConfigError, match=r"model\.params\.shuffle_groups: Input should be a valid integer"):
        validate_config(tree(name="asymfusion", params={"shuffle_groups": 2.5}))
    with pytest.raises(ConfigError, match=r"model\.params\.modality 'ir' is not among the input modalities"):
        validate_config(tree(name="unimodal", params={"modality": "ir"}))
    config = validate_config(tree(name="unimodal", params={"modality": "depth"}))
    assert config.run_name().startswith("unimodal-depth-") and built(config).branch_names() == ["depth"]


@pytest.mark.parametrize("old,hint", [
    ({"cen": {"lambda": 1e-3}}, r"model\.cen: .*moved to model\.params \(model\.cen\.lambda -> model\.params\.lambda"),
    ({"modality": "rgb"}, r"model\.modality: .*moved to model\.params\.modality"),
    ({"rcu_residual": "post_activation"}, r"model\.rcu_residual: moved to model\.params\.rcu_residual"),
    ({"asymfusion": {"shuffle_groups": 4}}, r"model\.asymfusion: .*moved to model\.params"),
])
def test_old_keys_are_refused_with_where_they_moved(old, hint):
    with pytest.raises(ConfigError, match=hint):
        validate_config(tree(**old))
    searched = tree()
    searched["search"] = {"space": {"model.cen.lambda": {"type": "loguniform", "low": 1e-4, "high": 1e-2}}}
    with pytest.raises(ConfigError, match=r"model\.cen\.lambda: CEN's parameters moved to model\.params"):
        validate_config(searched)


@pytest.mark.parametrize("task,threshold,effective_lambda", [
    ("translation", 1e-2, 1e-3),  # the translation reference's --insnorm-threshold 1e-2, --lamda 1e-3 (added once)
    ("segmentation", 2e-2, 3 * 2e-4),  # the segmentation reference's 2e-4 per output, M + 1 = 3 outputs
])
def test_the_training_task_builds_cen_from_a_config_file_without_params_with_its_tasks_defaults(
        tmp_path, task, threshold, effective_lambda):
    """The path a run takes: a YAML file with no model.params -> load_config (prepared against the dataset) -> the
    task chosen from the manifest -> the model it trains."""
    import torch
    import yaml

    from fusionlab.data import Manifest
    from fusionlab.train.prepare import load_config
    from fusionlab.train.task import task_for

    backbone = BACKBONES[task]
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({
        "data": {"path": str(tmp_path / "data"),
                 "synthesize": {"task": task, "train": 2, "val": 1, "test": 1, "size": [32, 32]}},
        "model": {"name": "cen", "backbone": backbone}}))
    config = load_config(tmp_path / "run.yaml")
    model, _ = task_for(config, Manifest.load(config.data.path)).build(torch.device("cpu"))
    assert (model.threshold, model.l1_lambda) == (threshold, pytest.approx(effective_lambda))
    assert {layer.threshold for layer in model.modules() if hasattr(layer, "portion")} == {threshold}
    assert config.flat()["model.params.threshold"] == threshold
