"""Normalisation and augmentation: every modality and the label move together."""

import numpy as np
import pytest
import torch
from tiny_data import make_manifest

from fusionlab.data import Sample
from fusionlab.data.manifest import IMAGENET_MEAN, IMAGENET_STD
from fusionlab.data.transforms import Augment, prepare


def striped_sample(height=20, width=30) -> Sample:
    """Label = column index mod 3; rgb red = 40 * label; depth = 1000 * (label + 1) mm: each encodes the label."""
    label = (np.arange(width)[None, :].repeat(height, 0) % 3).astype(np.uint8)
    label[:, :2] = 255
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = 40 * np.minimum(label, 3)
    depth = (1000 * (np.minimum(label, 3).astype(np.uint16) + 1)).astype(np.uint16)
    return Sample("x", "train", {"rgb": rgb, "depth": depth}, label)


def test_normalisation_matches_the_references():
    sample = striped_sample()
    out = prepare(sample, make_manifest(), ["rgb", "depth"])
    assert out["image"].shape == (2, 3, 20, 30) and out["label"].dtype == torch.int64
    red = out["image"][0, 0]
    expected_red = (torch.from_numpy(sample.modalities["rgb"][..., 0]).float() / 255 - IMAGENET_MEAN[0]) \
        / IMAGENET_STD[0]
    torch.testing.assert_close(red, expected_red)
    depth = out["image"][1]
    assert torch.equal(depth[0], depth[1]) and torch.equal(depth[0], depth[2]), "depth replicated to 3 channels"
    torch.testing.assert_close(depth[0], torch.from_numpy(sample.modalities["depth"]).float() / 5000)


@pytest.mark.parametrize("seed", range(8))
def test_crop_pad_flip_keep_modalities_and_label_aligned(seed):
    sample = striped_sample()
    augment = Augment(crop=(24, 40), scale_range=(1.0, 1.0))  # no resampling: alignment can be checked exactly
    out = prepare(sample, make_manifest(), ["rgb", "depth"], augment, np.random.default_rng(seed))
    image, label = out["image"], out["label"]
    assert image.shape == (2, 3, 24, 40) and label.shape == (24, 40)
    labelled = label != 255
    red = image[0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]  # back to [0, 1]
    assert torch.allclose((red * 255 / 40)[labelled], label[labelled].float(), atol=1e-3)
    assert torch.allclose((image[1, 0] * 5000 / 1000 - 1)[labelled], label[labelled].float(), atol=1e-3)
    padded = (label == 255) & (image[1, 0] == 0)
    assert padded.sum() >= 24 * 40 - 20 * 30, "the padded area is ignore in the label and 0 in the images"


def test_random_scale_resizes_all_inputs_within_the_range():
    sample = striped_sample(40, 60)
    heights = set()
    for seed in range(6):
        # A crop larger than any scaled image: the unpadded area is the scaled image itself.
        out = prepare(sample, make_manifest(), ["rgb", "depth"], Augment(crop=(90, 130), scale_range=(0.5, 1.5)),
                      np.random.default_rng(seed))
        assert out["image"].shape == (2, 3, 90, 130)
        content = out["image"][1, 0] != 0  # depth >= 1000 mm everywhere in the sample, 0 only in the padding
        rows, cols = int(content.any(1).sum()), int(content.any(0).sum())
        assert 20 <= rows <= 60, "scale within [0.5, 1.5] of 40 rows"
        assert abs(cols - rows * 1.5) <= 1, "aspect ratio kept"
        assert int((out["label"] != 255).sum()) <= rows * cols
        assert set(out["label"].unique().tolist()) <= {0, 1, 2, 255}, "labels resized by nearest neighbour only"
        heights.add(rows)
    assert len(heights) > 3


def test_same_seed_same_augmentation():
    sample = striped_sample()
    first = prepare(sample, make_manifest(), ["rgb", "depth"], Augment(crop=(16, 16)), np.random.default_rng(5))
    second = prepare(sample, make_manifest(), ["rgb", "depth"], Augment(crop=(16, 16)), np.random.default_rng(5))
    assert torch.equal(first["image"], second["image"]) and torch.equal(first["label"], second["label"])
