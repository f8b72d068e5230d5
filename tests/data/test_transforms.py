"""Normalisation and augmentation: every modality and the label move together."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_data import make_manifest

from fusionlab.data import Sample
from fusionlab.data.manifest import IMAGENET_MEAN, IMAGENET_STD
from fusionlab.data.transforms import Augment, augment_tensors, prepare


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


# --- the references' scale clamp, interpolation and padding (data.min_short_side, data.resize, data.pad) ---

def rgbd(height, width, seed=0):
    """Random float images: rgb [3, H, W], depth [1, H, W] with many distinct values, label [H, W] in 0..39."""
    rng = np.random.default_rng(seed)
    rgb = torch.from_numpy(rng.normal(size=(3, height, width)).astype(np.float32))
    depth = torch.from_numpy(rng.integers(1, 10_000, (1, height, width)).astype(np.float32) / 5000)
    label = torch.from_numpy(rng.integers(0, 40, (height, width)))
    return rgb, depth, label


def scaled(height, width, augment, seed=0):
    """augment_tensors on ``rgbd`` (no flip): the scaled rgb, depth and label."""
    rgb, depth, label = rgbd(height, width)
    (rgb, depth), label = augment_tensors([rgb, depth], label, replace(augment, hflip=False), 255,
                                          np.random.default_rng(seed), ["rgb", "depth"])
    return rgb, depth, label


def content_shape(depth: torch.Tensor) -> tuple[int, int]:
    content = depth[0] != 0  # depth > 0 everywhere in ``rgbd``: 0 only in the padding
    return int(content.any(1).sum()), int(content.any(0).sum())


@pytest.mark.parametrize("seed", range(4))
def test_min_short_side_raises_any_smaller_draw_to_exactly_that_side(seed):
    augment = Augment(crop=(360, 480), scale_range=(0.5, 2.0), min_short_side=350, resize="reference")
    _, depth, _ = scaled(120, 160, augment, seed)  # any draw < 350 / 120 is raised: 350 x round(160 * 350 / 120)
    assert content_shape(depth) == (350, 467)


@pytest.mark.parametrize("seed", range(6))
def test_min_short_side_leaves_larger_draws_alone(seed):
    augment = Augment(crop=(260, 340), scale_range=(0.5, 2.0), min_short_side=100)
    draw = np.random.default_rng(seed).uniform(0.5, 2.0)  # the augmentation's first draw
    scale = max(draw, 100 / 120)
    assert content_shape(scaled(120, 160, augment, seed)[1]) == (round(120 * scale), round(160 * scale))
    unclamped = Augment(crop=(260, 340), scale_range=(0.5, 2.0))
    assert content_shape(scaled(120, 160, unclamped, seed)[1]) == (round(120 * draw), round(160 * draw))


def cv2_cubic(image: np.ndarray, scale: float) -> np.ndarray:
    """cv2.resize(image, None, fx=scale, fy=scale, interpolation=INTER_CUBIC) for a float [H, W] image, written out:
    separable, a = -0.75, output pixel d reads (d + 0.5) / scale - 0.5, indices clamped (border replicated)."""
    def axis(values: np.ndarray, out: int) -> np.ndarray:  # along axis 0
        a = -0.75
        result = np.zeros((out, *values.shape[1:]))
        for d in range(out):
            f = (d + 0.5) / scale - 0.5
            s = int(np.floor(f))
            x = f - s
            w0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
            w1 = ((a + 2) * x - (a + 3)) * x * x + 1
            w2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
            for k, w in zip(range(-1, 3), (w0, w1, w2, 1 - w0 - w1 - w2), strict=True):
                result[d] += w * values[min(max(s + k, 0), len(values) - 1)]
        return result

    height, width = image.shape
    rows = axis(image, round(height * scale))
    return axis(rows.T, round(width * scale)).T


def cv2_nearest(image: np.ndarray, scale: float) -> np.ndarray:
    """cv2 INTER_NEAREST with fx = fy = scale: output pixel d takes input min(floor(d / scale), size - 1)."""
    rows = np.minimum(np.floor(np.arange(round(image.shape[0] * scale)) / scale).astype(int), image.shape[0] - 1)
    cols = np.minimum(np.floor(np.arange(round(image.shape[1] * scale)) / scale).astype(int), image.shape[1] - 1)
    return image[rows][:, cols]


@pytest.mark.parametrize("scale", [0.61, 1.37, 2.0])
def test_reference_resize_is_cv2s_bicubic_for_rgb_and_nearest_for_depth_and_labels(scale):
    height, width = 30, 40
    size = (round(height * scale), round(width * scale))
    augment = Augment(crop=size, scale_range=(scale, scale), resize="reference")  # crop = scaled size: no pad/crop
    rgb, depth, label = scaled(height, width, augment)
    rgb_in, depth_in, label_in = rgbd(height, width)
    for channel in range(3):
        torch.testing.assert_close(rgb[channel].double(), torch.from_numpy(cv2_cubic(rgb_in[channel].numpy(), scale)),
                                   atol=1e-5, rtol=0)
    bilinear = F.interpolate(rgb_in[None], size=size, mode="bilinear", align_corners=False)[0]
    assert (rgb - bilinear).abs().max() > 0.05, "bicubic, not bilinear"
    assert set(depth.unique().tolist()) <= set(depth_in.unique().tolist()), "depth by nearest neighbour"
    assert torch.equal(depth[0], torch.from_numpy(cv2_nearest(depth_in[0].numpy(), scale)))
    assert torch.equal(label, torch.from_numpy(cv2_nearest(label_in.numpy(), scale)))
    if scale == 2.0:  # in / out = 1 / scale: torch's own resize, for the record
        expected = F.interpolate(rgb_in[None], size=size, mode="bicubic", align_corners=False)[0]
        torch.testing.assert_close(rgb, expected)


def test_reference_resize_of_any_other_modality_is_bicubic():
    augment = Augment(crop=(8, 8), resize="reference")
    assert [augment.interpolation(m) for m in ("rgb", "depth", "normal", "hha")] == \
        ["bicubic", "nearest", "bicubic", "bicubic"]
    assert {Augment(crop=(8, 8)).interpolation(m) for m in ("rgb", "depth", "normal")} == {"bilinear"}


def test_bilinear_resize_is_unchanged():
    """resize="bilinear" (the fusionlab recipe): every image bilinear on torch's in/out grid, labels nearest."""
    height, width, scale = 30, 40, 1.37
    size = (round(height * scale), round(width * scale))
    rgb, depth, label = scaled(height, width, Augment(crop=size, scale_range=(scale, scale)))
    rgb_in, depth_in, label_in = rgbd(height, width)
    assert torch.equal(rgb, F.interpolate(rgb_in[None], size=size, mode="bilinear", align_corners=False)[0])
    assert torch.equal(depth, F.interpolate(depth_in[None], size=size, mode="bilinear", align_corners=False)[0])
    assert torch.equal(label, F.interpolate(label_in[None, None].float(), size=size, mode="nearest")[0, 0].long())


def test_centre_padding_is_the_references():
    """The references' Pad: (crop - size + 1) // 2 on each side, then a random crop of the padded image."""
    _, depth, label = scaled(20, 30, Augment(crop=(24, 40), scale_range=(1.0, 1.0), pad="centre"))
    content = depth[0] != 0
    assert content[2:22, 5:35].all() and int(content.sum()) == 20 * 30, "2 rows and 5 columns on every side"
    assert (label[~content] == 255).all()
    tops = set()
    for seed in range(8):  # 5 rows short: 3 on each side, 26 rows cropped to 25, so the image starts at row 2 or 3
        _, depth, _ = scaled(20, 30, Augment(crop=(25, 30), scale_range=(1.0, 1.0), pad="centre"), seed)
        tops.add(int((depth[0] != 0).any(1).nonzero()[0]))
    assert tops == {2, 3}
    _, depth, _ = scaled(20, 30, Augment(crop=(24, 40), scale_range=(1.0, 1.0)))
    assert (depth[0] != 0)[:20, :30].all(), "bottom_right: the image at the top left"
