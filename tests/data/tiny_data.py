"""Small in-memory datasets for the data tests."""

import numpy as np

from fusionlab.data import LabelSpec, Manifest, Sample, depth_mm_spec, rgb_spec

CLASSES = ("floor", "wall", "box")


def make_manifest(encoding: str = "png") -> Manifest:
    return Manifest(name="tiny", task="segmentation",
                    modalities={"rgb": rgb_spec(encoding), "depth": depth_mm_spec(encoding)},
                    label=LabelSpec(classes=CLASSES))


def make_samples(count: int, size=(12, 16), seed: int = 0, split_of=lambda i: "train") -> list[Sample]:
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        rgb = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        depth = rng.integers(0, 65536, size, dtype=np.uint16)
        label = rng.integers(0, len(CLASSES), size, dtype=np.uint8)
        label[0, 0] = 255
        samples.append(Sample(f"s{i:03d}", split_of(i), {"rgb": rgb, "depth": depth}, label))
    return samples
