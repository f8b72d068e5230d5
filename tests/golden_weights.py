"""The golden whole-network files' weights (tests/data/golden/README.md): every tensor of the reference state dict,
in the reference's naming, rebuilt from its name by the README's rule."""

from __future__ import annotations

import math
import re
import zlib
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from fusionlab.models.resnet import BackboneSpec

_BN_WEIGHT = re.compile(r"bn_\d+\.weight$")
_BN_BIAS = re.compile(r"bn_\d+\.bias$")
_ENCODER = re.compile(r"(conv1|layer\d)")


def rule_tensor(name: str, shape: tuple[int, ...], salt: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(f"{salt}:{name}".encode()))
    if name.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if "running_var" in name:
        return torch.rand(shape, generator=g) * 0.5 + 0.75
    if "running_mean" in name:
        return torch.randn(shape, generator=g) * 0.1
    if _BN_WEIGHT.search(name):
        t = 1 + 0.2 * torch.randn(shape, generator=g)
        if ".bn2." in name:
            t[::3] = 1e-3
        return t
    if _BN_BIAS.search(name):
        return 0.1 * torch.randn(shape, generator=g)
    if name == "alpha":
        return torch.tensor([0.3, -0.2])
    t = torch.randn(shape, generator=g)
    fan_in = t[0].numel() if t.dim() > 1 else 1
    gain = 2.0 if _ENCODER.match(name) else 0.25
    return t * math.sqrt(gain / fan_in)


class Golden:
    """One golden whole-network file: inputs, outputs, the network's shape and its rebuilt reference weights."""

    def __init__(self, path: Path):
        data = np.load(path)
        self.path = path
        self.arrays = {key: data[key] for key in data.files}
        self.names = [str(name) for name in data["names"]]
        self.shapes = [tuple(int(v) for v in str(text).split(",") if v) for text in data["shapes"]]
        self.salt = int(data["salt"])
        self.layers = tuple(int(v) for v in data["layers"])
        self.threshold = float(data["threshold"])
        self.num_classes = int(data["num_classes"])

    @property
    def spec(self) -> BackboneSpec:
        return BackboneSpec(self.layers)

    @cached_property
    def reference_state(self) -> dict[str, torch.Tensor]:
        """Every tensor by the rule (built once; treat as read-only)."""
        return {name: rule_tensor(name, shape, self.salt) for name, shape in zip(self.names, self.shapes, strict=True)}

    def inputs(self) -> torch.Tensor:
        """``[M, B, C, H, W]``: x0 (rgb) and x1 (depth) stacked as fusionlab's models take them."""
        return torch.stack([torch.from_numpy(self.arrays["x0"]), torch.from_numpy(self.arrays["x1"])])

    def output(self, key: str) -> torch.Tensor:
        return torch.from_numpy(self.arrays[key])
