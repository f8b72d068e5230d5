"""The synthetic RGB-D benchmark: deterministic shards, sane values, and labels that need both modalities."""

import hashlib

import numpy as np
import pytest
from scipy.ndimage import uniform_filter
from sklearn.ensemble import HistGradientBoostingClassifier  # installed with mlflow

from fusionlab.data import DatasetReader, Manifest
from fusionlab.data.synthetic import (
    GENERATOR_VERSION,
    IGNORE_INDEX,
    SPLIT_CODES,
    SYNTHETIC_CLASSES,
    render_scene,
    write_synthetic,
)

SMALL = dict(train=6, val=2, test=2, size=(48, 64))
# Fusion must beat the better single modality by this much held-out mIoU. Measured with this protocol on scene seeds
# 0-11 (the test uses 7): both 0.76-0.87, best single 0.42-0.48, margin 0.30-0.44 (median 0.39).
MARGIN = 0.20
# Each single modality must be informative on its own: measured 0.37-0.48 (predicting the majority class: 0.07).
SINGLE_MIN_MIOU = 0.25


def shard_bytes(root):
    manifest = Manifest.load(root)
    return {shard.file: (shard.sha256, (root / shard.file).read_bytes())
            for shards in manifest.splits.values() for shard in shards}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "a"
    write_synthetic(out, seed=0, **SMALL)
    return out


def test_write_is_deterministic_and_seeded(small, tmp_path):
    write_synthetic(tmp_path / "b", seed=0, **SMALL)
    write_synthetic(tmp_path / "c", seed=1, **SMALL)
    a, b, c = shard_bytes(small), shard_bytes(tmp_path / "b"), shard_bytes(tmp_path / "c")
    assert sorted(a) == ["test-00000.parquet", "train-00000.parquet", "val-00000.parquet"]
    for name, (digest, data) in a.items():
        assert hashlib.sha256(data).hexdigest() == digest
        assert b[name] == (digest, data)
        assert c[name][0] != digest
    assert (small / "manifest.json").read_text() == (tmp_path / "b" / "manifest.json").read_text()


def test_manifest_and_per_sample_seeding(small, tmp_path):
    manifest = Manifest.load(small)
    assert manifest.name == "synthetic-rgbd" and manifest.task == "segmentation"
    assert manifest.label.classes == SYNTHETIC_CLASSES and manifest.label.ignore_index == IGNORE_INDEX
    assert set(manifest.modalities) == {"rgb", "depth"} and manifest.modalities["depth"].unit == "mm"
    assert manifest.image_size == (48, 64)
    assert manifest.source["seed"] == 0 and manifest.source["size"] == [48, 64]
    assert manifest.source["version"] == GENERATOR_VERSION
    assert {split: manifest.rows(split) for split in ("train", "val", "test")} == {"train": 6, "val": 2, "test": 2}
    # sample k of a split comes from (seed, split, k) alone: other split sizes do not change it
    other = tmp_path / "other"
    write_synthetic(other, seed=0, train=1, val=3, test=1, size=(48, 64))
    for root in (small, other):
        for sample in DatasetReader(root).iter_samples("val"):
            index = int(sample.sample_id.split("-")[1])
            rgb, depth, label = render_scene(np.random.default_rng([0, SPLIT_CODES["val"], index]), 48, 64)
            np.testing.assert_array_equal(sample.modalities["rgb"], rgb)
            np.testing.assert_array_equal(sample.modalities["depth"][:, :, 0], depth)
            np.testing.assert_array_equal(sample.label, label)


def test_values_and_class_coverage(small):
    reader = DatasetReader(small)
    reader.verify()
    counts = np.zeros(256, np.int64)
    for split in ("train", "val", "test"):
        for sample in reader.iter_samples(split):
            rgb, depth, label = sample.modalities["rgb"], sample.modalities["depth"][:, :, 0], sample.label
            assert rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3) and rgb.std() > 5
            assert depth.dtype == np.uint16 and label.dtype == np.uint8
            valid = depth[depth > 0]
            assert valid.min() >= 500 and valid.max() <= 10000, (valid.min(), valid.max())
            assert (depth == 0).mean() < 0.15  # holes exist but are the exception
            values = set(np.unique(label).tolist())
            assert values <= set(range(len(SYNTHETIC_CLASSES))) | {IGNORE_INDEX}
            if split == "train":
                counts += np.bincount(label.ravel(), minlength=256)
    missing = [name for k, name in enumerate(SYNTHETIC_CLASSES) if counts[k] == 0]
    assert not missing, f"classes absent from the training split: {missing}"


# -- fusion needs both modalities --------------------------------------------------------------------------------
def pixel_features(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The same recipe for every modality: per channel the value, masked local means (5x5, 15x15), the value minus
    the 15x15 mean, vertical and horizontal differences of the 5x5 mean, the 5x5 std; plus the valid fraction."""
    weight = valid.astype(np.float64)
    features = []
    for c in range(image.shape[2]):
        x = image[:, :, c] * weight

        def local_mean(values, size):
            return uniform_filter(values, size, mode="nearest") / np.maximum(
                uniform_filter(weight, size, mode="nearest"), 1e-6)

        m5, m15 = local_mean(x, 5), local_mean(x, 15)
        gy, gx = np.zeros_like(m5), np.zeros_like(m5)
        gy[3:-3] = m5[6:] - m5[:-6]
        gx[:, 3:-3] = m5[:, 6:] - m5[:, :-6]
        std = np.sqrt(np.maximum(local_mean(x * x, 5) - m5**2, 0.0))
        features += [image[:, :, c], m5, m15, image[:, :, c] - m15, gy, gx, std]
    features.append(uniform_filter(weight, 5, mode="nearest"))
    return np.stack(features, axis=-1).reshape(-1, len(features))


def scene_features(split_code: int, count: int, height: int = 48, width: int = 64):
    rgb_f, depth_f, labels = [], [], []
    for index in range(count):
        rgb, depth, label = render_scene(np.random.default_rng([7, split_code, index]), height, width)
        rgb_f.append(pixel_features(rgb / 255.0, np.ones(depth.shape, bool)))
        depth_f.append(pixel_features(depth[:, :, None] / 1000.0, depth > 0))
        labels.append(label.ravel())
    rgb_f, depth_f = np.concatenate(rgb_f), np.concatenate(depth_f)
    return {"rgb": rgb_f, "depth": depth_f, "both": np.concatenate([rgb_f, depth_f], axis=1)}, np.concatenate(labels)


def mean_iou(truth: np.ndarray, prediction: np.ndarray) -> float:
    ious = [((truth == k) & (prediction == k)).sum() / ((truth == k) | (prediction == k)).sum()
            for k in range(len(SYNTHETIC_CLASSES)) if ((truth == k) | (prediction == k)).any()]
    return float(np.mean(ious))


def test_fusion_beats_each_single_modality():
    train_x, train_y = scene_features(0, 24)
    test_x, test_y = scene_features(1, 12)
    subset = np.random.default_rng(0).choice(len(train_y), 20000, replace=False)
    majority = np.full_like(test_y, np.bincount(train_y).argmax())
    scores = {"majority": mean_iou(test_y, majority)}
    for name in ("rgb", "depth", "both"):
        model = HistGradientBoostingClassifier(max_iter=50, early_stopping=False, random_state=0)
        model.fit(train_x[name][subset], train_y[subset])
        scores[name] = mean_iou(test_y, model.predict(test_x[name]))
    print("held-out mIoU: " + ", ".join(f"{name} {score:.3f}" for name, score in scores.items()))
    best_single = max(scores["rgb"], scores["depth"])
    assert scores["rgb"] > SINGLE_MIN_MIOU and scores["depth"] > SINGLE_MIN_MIOU, scores
    assert scores["both"] >= best_single + MARGIN, scores
