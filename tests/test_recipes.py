"""Recipes: ``recipe`` fills every switch a config leaves unset, an explicit switch wins, and the label says which."""

import pytest

from fusionlab.config import ConfigError, get_dotted, validate_config
from fusionlab.config.recipes import SWITCHES, TRANSLATION_REFERENCE, recipe_label

SEGMENTATION = {"data": {"path": "data/x", "modalities": ["rgb", "depth"]}, "model": {"name": "cen"}}
TRANSLATION = {"data": {"path": "data/x", "modalities": ["normal", "reshading"]},
               "model": {"name": "cen", "backbone": "unet_mini"}}


def parsed(tree, **top):
    return validate_config({**tree, **top})


TOKENFUSION = {"data": {"path": "data/x", "modalities": ["rgb", "depth"]},
               "model": {"name": "tokenfusion", "backbone": "mit_mini"}}


@pytest.mark.parametrize("recipe", ["reference", "fusionlab"])
def test_every_switch_is_a_config_key_filled_from_the_recipe(recipe):
    """Every switch is filled in a CEN or a TokenFusion config (each model takes its own ``model.params``)."""
    flats = [parsed(tree, recipe=recipe).flat() for tree in (SEGMENTATION, TOKENFUSION)]
    for key, values in SWITCHES.items():
        holding = [flat for flat in flats if key in flat]
        assert holding, key
        assert all(flat[key] == values[recipe] for flat in holding), key
    assert [recipe_label(flat) for flat in flats] == [recipe, recipe]


def test_tokenfusion_trains_its_ensemble_weights_only_in_the_fusionlab_recipe():
    from fusionlab.models import build

    for recipe, trained in (("reference", False), ("fusionlab", True)):
        config = parsed(TOKENFUSION, recipe=recipe)
        model = build("tokenfusion", backbone="mit_mini", num_classes=4, modalities=["rgb", "depth"],
                      **config.model.build_kwargs(2))
        assert model.alpha.requires_grad is trained, recipe


def test_the_default_recipe_is_fusionlab_and_the_two_recipes_differ_in_every_switch():
    assert parsed(SEGMENTATION).recipe == "fusionlab"
    assert all(values["reference"] != values["fusionlab"] for values in SWITCHES.values())


def test_an_explicit_switch_wins_and_the_label_names_it():
    config = parsed({**SEGMENTATION, "train": {"amp": "bf16"}}, recipe="reference")
    assert config.train.amp == "bf16" and config.model.params["rcu_residual"] == "post_activation"
    assert recipe_label(config.flat()) == "custom: reference but train.amp=bf16"


def test_translation_runs_get_the_translation_reference_values():
    config = parsed(TRANSLATION, recipe="reference")
    flat = config.flat()
    for key, value in TRANSLATION_REFERENCE.items():
        assert get_dotted(config.model_dump(mode="json", by_alias=True), key) == (True, value)
    assert config.model.params["penalty"] == "once" and config.train.gan.discriminators == "per_branch"
    assert "model.params.rcu_residual" not in flat  # the U-Net has no RefineNet residual conv unit
    assert recipe_label(flat) == "reference"


@pytest.mark.parametrize("recipe", ["reference", "fusionlab"])
def test_param_switches_are_filled_only_where_the_model_has_the_parameter(recipe):
    unimodal = parsed({**SEGMENTATION, "model": {"name": "unimodal"}}, recipe=recipe)
    assert unimodal.model.params["rcu_residual"] == SWITCHES["model.params.rcu_residual"][recipe]
    assert "penalty" not in unimodal.model.params
    assert recipe_label(unimodal.flat()) == recipe
    concat = parsed({**TRANSLATION, "model": {"name": "concat", "backbone": "unet_mini"}}, recipe=recipe)
    assert concat.model.params == {} and recipe_label(concat.flat()) == recipe


def test_runs_logged_before_model_params_keep_their_label():
    flat = parsed(SEGMENTATION, recipe="reference").flat()
    old = {key.replace("model.params.penalty", "model.cen.penalty").replace("model.params.rcu_residual",
                                                                              "model.rcu_residual"): value
           for key, value in flat.items()}
    assert "model.cen.penalty" in old and recipe_label(old) == "reference"
    assert recipe_label({**old, "model.cen.penalty": "once"}) == "custom: reference but model.params.penalty=once"


def test_reference_penalty_pressure_is_the_references_lambda_per_output():
    reference = parsed(SEGMENTATION, recipe="reference")
    ours = parsed(SEGMENTATION, recipe="fusionlab")
    # the reference adds 2e-4 * sum|gamma| for each of M + 1 = 3 outputs; fusionlab once, lambda scaled to match
    assert reference.model.model_params().resolved_lambda(2) == pytest.approx(2e-4)
    assert ours.model.model_params().resolved_lambda(2) == pytest.approx(6e-4)
    assert reference.model.build_kwargs(2)["l1_lambda"] == pytest.approx(ours.model.build_kwargs(2)["l1_lambda"])
    assert reference.flat()["model.params.effective_lambda"] == pytest.approx(6e-4)


def test_selecting_on_a_split_that_is_trained_on_is_refused():
    with pytest.raises(ConfigError, match="train.selection best_val selects on split 'val'"):
        parsed({**SEGMENTATION, "train": {"selection": "best_val"}}, recipe="reference")
    with pytest.raises(ConfigError, match="recipe"):
        parsed(SEGMENTATION, recipe="paper")


def test_a_search_under_the_references_selection_is_told_to_select_on_val():
    search = {"space": {"model.params.threshold": {"type": "uniform", "low": 0.01, "high": 0.03}}}
    with pytest.raises(ConfigError, match="search.metric val/miou is not logged under train.selection best_test"):
        parsed({**SEGMENTATION, "search": search}, recipe="reference")
    tree = {**SEGMENTATION, "search": search, "train": {"selection": "best_val"},
            "data": {**SEGMENTATION["data"], "train_split": "train"}}
    assert parsed(tree, recipe="reference").search.metric == "val/miou"


def test_the_resolved_lambda_is_logged_as_written():
    assert parsed(SEGMENTATION).flat()["model.params.lambda"] == 6e-4  # exactly: 3 x 2e-4, not 0.0006000000000000001


def test_a_multi_worker_run_records_its_global_batch_and_is_no_longer_the_reference():
    one = parsed(SEGMENTATION, recipe="reference", train={"batch_size": 6})
    eight = parsed(SEGMENTATION, recipe="reference", train={"batch_size": 6}, resources={"num_workers": 8})
    assert one.flat()["train.global_batch_size"] == 6 and eight.flat()["train.global_batch_size"] == 48
    assert recipe_label(one.flat()) == "reference"
    assert recipe_label(eight.flat()) == "custom: reference but global batch 48 (8 workers x 6)"
    # as read back from a run's params (strings)
    assert "global batch 48" in recipe_label({k: str(v) for k, v in eight.flat().items()})
