"""The FID variant of InceptionV3 (pytorch-fid's `fid_inception_v3()`), written by hand so no torchvision is needed.

The module names and shapes are those of torchvision's `Inception3(num_classes=1008, aux_logits=False)`, the model
pytorch-fid builds before loading `pt_inception-2015-12-05-6726825d.pth` with a strict `load_state_dict`: the stem
`Conv2d_1a_3x3 ... Conv2d_4a_3x3`, `Mixed_5b ... Mixed_7c`, and `fc` [1008, 2048]; no `AuxLogits`. Each conv is
`BasicConv2d` (`conv`: Conv2d without bias, `bn`: BatchNorm2d(eps=0.001), then ReLU). The FID patches: the average
pools of the A, C and first E blocks do not count the zero padding (TensorFlow's behaviour), and the last E block
(`Mixed_7c`) max-pools in its pool branch.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionlab.errors import FusionlabError
from fusionlab.torch_files import TorchFileError, load_weights_only

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{INCEPTION_FILE}"
WEIGHTS_ENV = "FUSIONLAB_INCEPTION_WEIGHTS"
INCEPTION_NAME = "inception-v3-fid (pt_inception-2015-12-05)"
FEATURE_DIM = 2048
NUM_CLASSES = 1008


class InceptionWeightsError(FusionlabError):
    """The Inception weights file cannot be read or does not hold the FID InceptionV3 state dict."""


class InceptionWeightsMissing(InceptionWeightsError, FileNotFoundError):
    """The Inception weights file is not where it was expected."""


def missing_weights_message(path: str | os.PathLike) -> str:
    return (f"FID Inception weights not found at {path}: FID/KID with Inception features needs the pytorch-fid "
            f"weights file {INCEPTION_FILE} (about 92 MiB). Download it on a machine with internet from "
            f"{INCEPTION_URL}, copy it here, then pass its path (weights=...) or set {WEIGHTS_ENV} to it, "
            f"or put it at ~/.cache/fusionlab/{INCEPTION_FILE}. Nothing is downloaded at run time.")


def prepare_images(images: Tensor, min_size: int = 1) -> Tensor:
    """Check a `[N, 3, H, W]` batch of images in [0, 1] (uint8 is taken as 0..255) and return it as float32."""
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise FusionlabError(f"images must be a [N, 3, H, W] tensor, got {shape}")
    if min(images.shape[-2:]) < min_size:
        raise FusionlabError(f"images must be at least {min_size}x{min_size} px, got {tuple(images.shape[-2:])}")
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    images = images.float()
    if images.numel() and (images.min() < -1e-3 or images.max() > 1 + 1e-3):
        raise FusionlabError(f"images must be in [0, 1], got values in [{images.min().item():.3g}, "
                             f"{images.max().item():.3g}] (normalized or 0..255 floats?)")
    return images


class BasicConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_no_pad(x: Tensor) -> Tensor:
    # TensorFlow's average pool ignores the zero padding: the FID patch to torchvision's blocks.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b/5c/5d); out channels 224 + pool_features."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool_no_pad(x))], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (Mixed_6a); out channels 480 + in_channels."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convs (Mixed_6b..6e); out channels 768."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg_pool_no_pad(x))], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (Mixed_7a); out channels 512 + in_channels."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 3x3 convs (Mixed_7b: average pool without padding, Mixed_7c: max pool); out 2048."""

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        # The FID model max-pools in Mixed_7c (an artefact of the TF graph it was ported from), as pytorch-fid does.
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool_no_pad(x)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """InceptionV3 as used for FID; `features()` gives the 2048-d pool3 activations of images in [0, 1]."""

    name = INCEPTION_NAME
    feature_dim = FEATURE_DIM

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)  # kept for the weight file's layout; features stop before it
        self.eval()

    def pool3(self, x: Tensor) -> Tensor:
        """`[N, 3, 299, 299]` in [-1, 1] -> `[N, 2048]` final average pool activations."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def features(self, images: Tensor) -> Tensor:
        """Images in [0, 1], `[N, 3, H, W]` -> `[N, 2048]` float32 features, as pytorch-fid computes them.

        The resize to 299x299 is `F.interpolate(bilinear, align_corners=False)` without antialiasing, exactly as
        pytorch-fid does (its FID numbers are the reference); clean-fid's antialiased resize gives other values.
        """
        x = prepare_images(images).to(self.fc.weight.device)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=False)
        return self.pool3(2 * x - 1)

    forward = features


def load_inception(path: str | os.PathLike) -> FIDInceptionV3:
    """Build `FIDInceptionV3` from pytorch-fid's weights file, refusing a file that is missing or has other keys."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InceptionWeightsMissing(missing_weights_message(path))
    try:
        state = load_weights_only(path)
    except TorchFileError as e:  # a truncated download, an HTML page, a pickle with code in it
        raise InceptionWeightsError(f"cannot read the Inception weights file {path} as a torch state dict "
                                    f"({e.reason}); expected {INCEPTION_FILE} from {INCEPTION_URL}") from None
    if not isinstance(state, dict):
        raise InceptionWeightsError(f"{path} holds a {type(state).__name__}, not a state dict; "
                                    f"expected {INCEPTION_FILE} from {INCEPTION_URL}")
    model = FIDInceptionV3()
    expected = model.state_dict()
    # The 2015-12-05 port may predate BatchNorm's num_batches_tracked buffer: it is optional (and unused in eval).
    optional = {k for k in expected if k.endswith(".num_batches_tracked")}
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
                   if k in state and isinstance(state[k], Tensor) and state[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong_shape)):
            if keys:
                more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
                parts.append(f"{label}: {', '.join(keys[:5])}{more}")
        raise InceptionWeightsError(f"{path} is not the FID InceptionV3 state dict ({INCEPTION_FILE}): "
                                    + "; ".join(parts))
    state = dict(state)
    for k in optional:
        state.setdefault(k, expected[k])
    model.load_state_dict(state, strict=True)
    model.requires_grad_(False)
    return model.eval()
