"""Reading the references' checkpoints (weights_only, numpy scalars allowed and nothing else) and the strict
mapping's errors: every missing, unexpected and mis-shaped key is named with its shape."""

import hashlib
import pickle
import re

import numpy as np
import pytest
import torch

from fusionlab.models import build
from fusionlab.models.backbones import get_backbone
from fusionlab.models.reference_checkpoint import (
    ReferenceCheckpointError,
    checkpoint_layers,
    load_reference_state,
    read_reference_checkpoint,
)
from fusionlab.models.reference_names import ReferenceStateError, map_reference_state, reference_name
from fusionlab.models.resnet import BackboneSpec


def mini_model():
    return build("cen", backbone="resnet_mini", num_classes=5, modalities=["rgb", "depth"],
                 rcu_residual="post_activation")


def reference_state(model) -> dict[str, torch.Tensor]:
    """The model's weights under the reference's names (what a reference checkpoint of this shape holds)."""
    return {reference_name(key): value.clone() for key, value in model.state_dict().items()}


def save_reference(path, state, **extra):
    torch.save({"segmenter": {f"module.{k}": v for k, v in state.items()}, **extra}, path)


def test_reads_the_savers_dict_with_a_numpy_best_val(tmp_path):
    state = reference_state(mini_model())
    path = tmp_path / "model-best.pth.tar"
    save_reference(path, state, epoch_start=150, best_val=np.float64(51.07))
    checkpoint = read_reference_checkpoint(path)
    assert set(checkpoint.state) == set(state)  # the DataParallel prefix is gone
    assert checkpoint.epoch_start == 150 and checkpoint.best_val == 51.07 and type(checkpoint.best_val) is float
    assert checkpoint.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert checkpoint.layers == (2, 2, 2, 2)


def test_a_numpy_1_scalar_is_read_too(tmp_path):
    """numpy 1 pickles its scalars as numpy.core.multiarray.scalar (the references' checkpoints)."""
    path = tmp_path / "legacy.pth.tar"
    torch.save({"segmenter": {"module.alpha": torch.ones(2)}, "best_val": np.float64(0.5)}, path,
               _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    assert b"numpy._core.multiarray" in data
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert read_reference_checkpoint(path).best_val == 0.5


def test_no_other_global_is_allowed(tmp_path):
    path = tmp_path / "pickled.pth.tar"
    torch.save({"segmenter": {}, "args": pickle.PicklingError("code")}, path)
    with pytest.raises(ReferenceCheckpointError, match=r"pickled\.pth\.tar.*weights_only.*PicklingError"):
        read_reference_checkpoint(path)


def test_not_a_savers_dict_is_refused(tmp_path):
    path = tmp_path / "bare.pth"
    torch.save({"conv1.module.weight": torch.ones(1)}, path)
    with pytest.raises(ReferenceCheckpointError, match=r"bare\.pth: expected a dict with 'segmenter'.*found"):
        read_reference_checkpoint(path)
    with pytest.raises(ReferenceCheckpointError, match="not found"):
        read_reference_checkpoint(tmp_path / "absent.pth.tar")


def test_every_bad_key_is_named_with_its_shape():
    model = mini_model()
    state = reference_state(model)
    del state["layer2.1.bn2.bn_1.weight"]
    state["layer5.0.conv1.module.weight"] = torch.zeros(3, 3)
    state["clf_conv.module.weight"] = torch.zeros(7, 32, 3, 3)
    with pytest.raises(ReferenceStateError) as error:
        map_reference_state(state, model.state_dict(), "ckpt.pth.tar")
    message = str(error.value)
    assert message.startswith("ckpt.pth.tar does not match the model")
    assert "1 missing key(s): layer2.1.bn2.bn_1.weight [32] (the model's encoder.layer2.1.bn2.bns.1.weight)" in message
    assert "1 unexpected key(s): layer5.0.conv1.module.weight [3, 3] (no fusionlab counterpart)" in message
    assert ("1 mis-shaped tensor(s): clf_conv.module.weight is [7, 32, 3, 3], the model's decoder.classifier.weight "
            "is [5, 32, 3, 3]") in message


def test_a_name_the_model_lacks_and_a_modality_too_many():
    model = mini_model()
    state = reference_state(model)
    state["layer1.0.bn1.bn_2.weight"] = torch.ones(16)  # a third modality's BN
    with pytest.raises(ReferenceStateError, match=re.escape(
            "layer1.0.bn1.bn_2.weight [16] (would be encoder.layer1.0.bn1.bns.2.weight, which the model lacks)")):
        map_reference_state(state, model.state_dict())


def test_a_depth_mismatch_says_both_depths():
    source = mini_model()
    deeper = BackboneSpec((2, 3, 2, 2), width=16, decoder_dims=get_backbone("resnet_mini").decoder_dims)
    model = build("cen", backbone=deeper, num_classes=5, modalities=["rgb", "depth"])
    state = reference_state(source)
    assert checkpoint_layers(state) == (2, 2, 2, 2)
    with pytest.raises(ReferenceStateError, match=re.escape(
            "(the checkpoint has (2, 2, 2, 2) bottlenecks per stage, the backbone (2, 3, 2, 2))")):
        load_reference_state(model, state, "ckpt", deeper)


def test_a_faithful_state_loads_exactly():
    source, model = mini_model(), mini_model()
    load_reference_state(model, reference_state(source), "ckpt", get_backbone("resnet_mini"))
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
