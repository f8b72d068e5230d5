"""A model saved as weights plus a spec and rebuilt through the registry: the same outputs after the round trip, and
nothing but a fusionlab model directory is loaded (a pickle in it never runs)."""

import json

import pytest
import torch

from fusionlab.models import build
from fusionlab.models.model_files import SPEC_FILE, WEIGHTS_FILE, ModelFileError, load_model_dir, save_model_dir
from fusionlab.models.predictor import SegmentationPredictor, TranslationPredictor
from fusionlab.models.resnet import BackboneSpec
from fusionlab.models.zoo import cen

SPECS = {"rgb": {"dtype": "uint8", "channels": 3, "encoding": "raw", "scale": 1 / 255, "mean": (0.485, 0.456, 0.406),
                 "std": (0.229, 0.224, 0.225), "unit": None}}


class Payload:
    """Unpickling this writes ``sentinel``: what an attacker's model.pth would do with os.system."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return exec, (f"open({self.sentinel!r}, 'w').write('ran')",)


def trained(model):
    """A few optimiser steps in train mode: weights and BatchNorm statistics that no fresh build has."""
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        output = model(torch.randn(len(model.modalities), 2, 3, 32, 32)).ensemble
        optimiser.zero_grad()
        output.square().mean().backward()
        optimiser.step()
    return model.eval()


def segmenter(backbone="resnet_mini", name="cen", **params):
    model = trained(build(name, backbone=backbone, num_classes=5, modalities=["rgb", "depth"], **params))
    return SegmentationPredictor(model, SPECS, [f"c{k}" for k in range(5)], 7, "bicubic")


def assert_round_trip(predictor, directory):
    x = torch.randn(2, 2, 3, 32, 32)
    with torch.no_grad():
        expected = predictor(x)
        loaded = load_model_dir(save_model_dir(predictor, directory))
        assert type(loaded) is type(predictor) and not loaded.training
        assert torch.equal(loaded(x), expected)
    return loaded


@pytest.mark.parametrize("name", ["cen", "asymfusion"])
def test_a_trained_segmenter_round_trips(tmp_path, name):
    predictor = segmenter(name=name)
    loaded = assert_round_trip(predictor, tmp_path / "model")
    assert json.dumps(loaded.settings(), sort_keys=True) == json.dumps(predictor.settings(), sort_keys=True)  # lists
    assert loaded.model.build_args == predictor.model.build_args


def test_a_custom_backbone_spec_round_trips(tmp_path):
    spec = BackboneSpec((1, 2, 1, 1), width=8, decoder_dims=(16, 8, 8, 8))
    loaded = assert_round_trip(segmenter(spec, threshold=0.05, rcu_residual="post_activation"), tmp_path / "m")
    assert loaded.model.build_args.backbone == spec
    assert loaded.model.build_args.params == {"threshold": 0.05, "rcu_residual": "post_activation"}


def test_a_trained_translation_generator_round_trips(tmp_path):
    model = trained(build("cen", backbone="unet_mini", num_classes=3, modalities=["rgb", "depth"],
                          task="translation"))
    loaded = assert_round_trip(TranslationPredictor(model, SPECS, "rgb"), tmp_path / "model")
    assert loaded.target == "rgb" and loaded.input_specs["rgb"]["scale"] == SPECS["rgb"]["scale"]


def test_the_directory_holds_json_and_tensors_only(tmp_path):
    save_model_dir(segmenter(), tmp_path)
    spec = json.loads((tmp_path / SPEC_FILE).read_text())
    assert spec["format"] == "fusionlab.model" and spec["version"] == 1
    assert spec["model"]["name"] == "cen" and spec["model"]["backbone"] == "resnet_mini"
    weights = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)
    assert all(isinstance(value, torch.Tensor) for value in weights.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([SPEC_FILE, WEIGHTS_FILE])


def test_a_model_not_built_by_the_registry_is_not_saved(tmp_path):
    model = cen(backbone="resnet_mini", num_classes=5, modalities=["rgb", "depth"])  # the constructor, not build
    with pytest.raises(ModelFileError, match="not built by fusionlab.models.build"):
        save_model_dir(SegmentationPredictor(model), tmp_path)


@pytest.fixture
def saved(tmp_path):
    directory = tmp_path / "model"
    save_model_dir(segmenter(), directory)
    return directory


def edit_spec(directory, edit):
    spec = json.loads((directory / SPEC_FILE).read_text())
    edit(spec)
    (directory / SPEC_FILE).write_text(json.dumps(spec))


def test_a_pickled_model_beside_no_spec_is_refused_unrun(tmp_path):
    """The layout mlflow.pytorch wrote (MLmodel, data/model.pth as a pickle): nothing of it is read."""
    sentinel = tmp_path / "ran"
    (tmp_path / "model" / "data").mkdir(parents=True)
    torch.save(Payload(sentinel), tmp_path / "model" / "data" / "model.pth")
    (tmp_path / "model" / "MLmodel").write_text("flavors:\n  pytorch:\n    model_data: data\n")
    with pytest.raises(ModelFileError, match=r"'runs:/x/model' is not a fusionlab model: expected "
                                             r"fusionlab-model\.json.*pickles.*refused"):
        load_model_dir(tmp_path / "model", where="'runs:/x/model'")
    assert not sentinel.exists()


def test_a_pickle_as_the_weights_is_refused_unrun(saved, tmp_path):
    sentinel = tmp_path / "ran"
    torch.save({"weight": Payload(sentinel)}, saved / WEIGHTS_FILE)
    with pytest.raises(ModelFileError, match=r"weights\.pt is not a state dict of tensors .*weights_only=True"):
        load_model_dir(saved)
    assert not sentinel.exists()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s["model"].update(name="nope"), r"field 'model' does not build a model: unknown model 'nope'"),
    (lambda s: s["model"].update(num_classes=7), r"weights\.pt does not fit the model .*size mismatch"),
    (lambda s: s["model"].update(backbone={"layers": [1, 1, 1, 1]}), r"weights\.pt does not fit the model"),
    (lambda s: s["model"].update(num_classes="five"), r"field 'model' does not build a model"),
    (lambda s: s["model"].update(task="detection"), r"field 'model\.task' must be one of"),
    (lambda s: s["model"].pop("modalities"), r"field 'model' has no \['modalities'\]"),
    (lambda s: s["predictor"].update(upsample="nearest"), r"field 'predictor' .*upsample must be one of"),
    (lambda s: s["predictor"].update(colour="red"), r"field 'predictor' .*colour"),
    (lambda s: s.update(format="mlflow.pytorch"), r"field 'format' must be 'fusionlab\.model', got 'mlflow"),
    (lambda s: s.update(version=2), r"version 2; this fusionlab reads version 1"),
], ids=["unknown-model", "num-classes-mismatch", "backbone-mismatch", "num-classes-not-a-number", "unknown-task",
        "no-modalities", "bad-upsample", "unknown-predictor-setting", "foreign-format", "future-version"])
def test_a_spec_that_does_not_rebuild_its_weights_is_refused(saved, edit, message):
    edit_spec(saved, edit)
    with pytest.raises(ModelFileError, match=message):
        load_model_dir(saved)


def test_missing_or_damaged_files_are_refused(saved):
    (saved / SPEC_FILE).write_text("{not json")
    with pytest.raises(ModelFileError, match=r"fusionlab-model\.json is not JSON"):
        load_model_dir(saved)
    (saved / SPEC_FILE).unlink()
    with pytest.raises(ModelFileError, match=r"found \['weights\.pt'\]"):
        load_model_dir(saved)


def test_missing_or_truncated_weights_are_refused(saved):
    data = (saved / WEIGHTS_FILE).read_bytes()
    (saved / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"weights\.pt is not a state dict of tensors"):
        load_model_dir(saved)
    (saved / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelFileError, match=r"no weights\.pt"):
        load_model_dir(saved)
