"""The translation recipe switches in a run: the per-branch discriminator trains, is checkpointed with its Adam state
and resumes; scoring with dropout on (train.gan.eval_dropout) and at data.eval_size."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fusionlab.data import Manifest
from fusionlab.data.synthetic_translation import write_synthetic_translation
from fusionlab.data.torch_dataset import ShardDataset
from fusionlab.fid import resolve_extractor
from fusionlab.train.checkpoint import load_checkpoint
from fusionlab.train.driver import run_local
from fusionlab.train.prepare import parse_config
from fusionlab.train.translation import evaluate_translation, resized, scoring_mode
from fusionlab.train.translation_task import build_pair


@pytest.fixture(scope="module")
def data64(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "synthetic-translation-64"
    write_synthetic_translation(out, train=4, val=4, test=4, size=(64, 64), seed=0)
    return out


pytestmark = pytest.mark.usefixtures("no_inception_file")  # tests/train/conftest.py


def config_for(dataset, epochs=2, model="cen", **gan):
    return parse_config({
        "data": {"path": str(dataset), "modalities": ["normal", "reshading"], "crop": [32, 32],
                 "scale_range": [0.5, 0.5], "eval_size": [32, 32]},
        "model": {"name": model, "backbone": "unet_mini"},
        "train": {"epochs": epochs, "batch_size": 2, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3,
                  "betas": [0.5, 0.999], "weight_decay": 0.0, "fid": {"kid_subsets": 5},
                  "gan": {"discriminators": "per_branch", "eval_dropout": True, "discriminator_filters": 8,
                          **gan}},
        "resources": {"num_workers": 1},
        "tracking": {"experiment": "translation-switches"},
    })


def test_per_branch_discriminator_trains_checkpoints_and_resumes(data64, tmp_path):
    first = config_for(data64)
    reports = run_local(first, tmp_path)
    assert all(torch.isfinite(torch.tensor(r["train/discriminator"])) for r in reports)
    checkpoints = tmp_path / "checkpoints" / first.run_name()
    checkpoint = load_checkpoint(sorted(checkpoints.glob("epoch_*"))[-1])
    assert checkpoint["discriminator"]["model.0.weight"].shape[1] == 3 + 3, "(one branch's input, image)"
    assert "model.3.weight" in checkpoint["discriminator"], "the reference's affine InstanceNorm"
    assert checkpoint["discriminator_optimizer"]["state"], "its Adam moments are saved"

    reports = run_local(config_for(data64, epochs=3), tmp_path)
    assert [r["epoch"] for r in reports] == [2]
    last = load_checkpoint(sorted(checkpoints.glob("epoch_*"))[-1])
    assert any(not torch.equal(value, checkpoint["discriminator"][name])
               for name, value in last["discriminator"].items()), "the restored discriminator kept training"
    assert last["discriminator_optimizer"]["state"][0]["step"] > checkpoint["discriminator_optimizer"]["state"][0][
        "step"], "and its optimiser continued from the saved moments"


@pytest.mark.parametrize(("model", "channels"), [("cen", 6), ("concat", 9), ("average", 6)])
def test_the_per_branch_discriminator_sees_one_branchs_input(data64, model, channels):
    config = config_for(data64, model=model)
    _, discriminator = build_pair(config, Manifest.load(data64))
    assert discriminator.model[0].in_channels == channels
    shared = config_for(data64, model=model, discriminators="shared")
    _, discriminator = build_pair(shared, Manifest.load(data64))
    assert discriminator.model[0].in_channels == 2 * 3 + 3


def test_scoring_with_dropout_on_keeps_the_rest_in_eval_mode(data64):
    generator, _ = build_pair(config_for(data64), Manifest.load(data64))
    generator.train()
    scoring_mode(generator, eval_dropout=True)
    modes = {type(m): m.training for m in generator.modules() if isinstance(m, nn.Dropout | nn.InstanceNorm2d)}
    assert modes == {nn.Dropout: True, nn.InstanceNorm2d: False}
    x = torch.randn(2, 1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(generator(x).ensemble, generator(x).ensemble), "dropout draws a new mask"
        scoring_mode(generator, eval_dropout=False)
        assert not any(m.training for m in generator.modules())
        assert torch.equal(generator(x).ensemble, generator(x).ensemble)


def test_scoring_at_eval_size(data64):
    image, target = torch.rand(2, 2, 3, 64, 64), torch.full((2, 3, 64, 64), 0.25)
    small_image, small_target = resized(image, target, (32, 32))
    assert small_image.shape == (2, 2, 3, 32, 32) and small_target.shape == (2, 3, 32, 32)
    torch.testing.assert_close(small_target, torch.full_like(small_target, 0.25))
    # the reference's PIL Resize (BILINEAR, which filters when it shrinks)
    pil = [np.asarray(Image.fromarray(channel.numpy(), mode="F").resize((32, 32), Image.BILINEAR))
           for channel in image[1, 0]]
    torch.testing.assert_close(small_image[1, 0], torch.from_numpy(np.stack(pil)), rtol=0, atol=1e-6)
    assert resized(image, target, None)[0] is image

    config = config_for(data64)
    manifest = Manifest.load(data64)
    generator, _ = build_pair(config, manifest)
    batches = torch.utils.data.DataLoader(ShardDataset(data64, "val", ["normal", "reshading"]), batch_size=2)
    _, examples = evaluate_translation(generator, batches, config.train.fid, torch.device("cpu"), manifest,
                                       ["normal", "reshading"], resolve_extractor("local", None),
                                       gather=lambda t: t, keep_examples=1, size=(32, 32))
    assert examples[0]["target"].shape == (3, 32, 32) and examples[0]["outputs"].shape[-2:] == (32, 32)


def test_multi_scale_scoring_is_refused_for_translation(data64):
    from fusionlab.config import ConfigError

    with pytest.raises(ConfigError, match="multi-scale and flip scoring is for segmentation"):
        parse_config({"data": {"path": str(data64), "modalities": ["normal", "reshading"]},
                      "model": {"name": "cen", "backbone": "unet_mini", "eval_flip": True}})
