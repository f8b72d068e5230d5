"""Each registered model declares its parameters once (models/params.py): defaults, the 1/M portion check, kwargs."""

import dataclasses

import pytest

from fusionlab.models import TASKS, list_models, runs_on
from fusionlab.models.params import (
    CENParams,
    ModelParams,
    SegmenterParams,
    TranslationCENParams,
    UnimodalParams,
    check_portion,
)
from fusionlab.models.registry import build_from_params, params_class

EVERY_MODEL = [(task, name) for task in TASKS for name in list_models(task=task)]


@pytest.mark.parametrize("task,name", EVERY_MODEL)
def test_every_registered_model_declares_a_frozen_params_class(task, name):
    cls = params_class(name, task)
    assert issubclass(cls, ModelParams) and dataclasses.is_dataclass(cls)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cls().__setattr__("anything", 1)
    # only the RefineNet segmenters have the residual-conv-unit switch
    # RefineNet's switch, on every segmentation model that runs on a ResNet (not TokenFusion's transformer)
    assert ("rcu_residual" in cls.config_keys()) == (task == "segmentation" and runs_on(name, "resnet_mini"))


def test_the_constructors_defaults_are_the_params_classes():
    segmentation = build_from_params("cen", backbone="resnet_mini", num_classes=3, modalities=["rgb", "depth"])
    assert segmentation.threshold == CENParams.threshold and segmentation.portion == 0.5
    assert segmentation.l1_lambda == CENParams().effective_lambda(2)
    translation = build_from_params("cen", backbone="unet_mini", num_classes=3, modalities=["a", "b"],
                                    task="translation")
    assert (translation.l1_lambda, translation.threshold) == (1e-3, 1e-2)  # the translation reference's
    assert segmentation.build_args.params == CENParams().constructor_kwargs(2)


@pytest.mark.parametrize("penalty,resolved,effective", [("per_output", 2e-4, 6e-4), ("once", 6e-4, 6e-4)])
def test_cen_lambda_none_is_the_references_pressure_in_either_penalty_form(penalty, resolved, effective):
    params = CENParams(penalty=penalty)
    assert params.resolved_lambda(2) == pytest.approx(resolved) and params.effective_lambda(2) == pytest.approx(
        effective)
    assert params.constructor_kwargs(2)["l1_lambda"] == params.effective_lambda(2)
    assert "lambda_" not in params.constructor_kwargs(2) and "penalty" not in params.constructor_kwargs(2)


def test_translation_lambda_is_used_as_given_and_scaled_per_output():
    assert TranslationCENParams().effective_lambda(3) == 1e-3
    assert TranslationCENParams(penalty="per_output").effective_lambda(3) == pytest.approx(4e-3)


@pytest.mark.parametrize("portion,num_modalities,ok", [(None, 3, True), (0.5, 2, True), (0.51, 2, False),
                                                       (0.0, 2, False), (0.34, 3, False), (-0.1, 2, False)])
def test_the_one_portion_check(portion, num_modalities, ok):
    if ok:
        assert check_portion(portion, num_modalities) == (portion or 1 / num_modalities)
    else:
        with pytest.raises(ValueError, match=r"portion must be in \(0, 1/M\]"):
            check_portion(portion, num_modalities)
        with pytest.raises(ValueError, match=r"cen: portion must be in"):
            build_from_params("cen", CENParams(portion=portion), backbone="resnet_mini", num_classes=3,
                              modalities=["m"] * num_modalities)


def test_params_check_their_modalities_and_their_class():
    with pytest.raises(ValueError, match=r"unimodal: modality 'ir' is not among the input modalities"):
        build_from_params("unimodal", UnimodalParams(modality="ir"), backbone="resnet_mini", num_classes=3,
                          modalities=["rgb", "depth"])
    with pytest.raises(TypeError, match=r"model 'cen' takes CENParams, got SegmenterParams"):
        build_from_params("cen", SegmenterParams(), backbone="resnet_mini", num_classes=3, modalities=["a", "b"])


def test_config_keys_round_trip():
    params = CENParams(lambda_=1e-3, portion=0.25)
    assert params.to_config()["lambda"] == 1e-3 and CENParams.from_config(params.to_config()) == params
    with pytest.raises(ValueError, match=r"unknown CENParams keys \['lamda'\]"):
        CENParams.from_config({"lamda": 1})
