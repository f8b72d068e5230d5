"""Makes block.npz and encoder.npz from the reference GeminiFusion code (github.com/JiaDingCN/GeminiFusion), on CPU.

Runs outside the test suite, on an extracted checkout of the reference (its ``models/mix_transformer.py`` and
``models/modules.py``; ``models/segformer.py`` too for ``--counts``)::

    git --git-dir <bare clone> archive 1f102f6451ec7cd4546278ef2022f639f979c60b models | tar -x -C <dir>
    python tests/data/golden/geminifusion/make_golden.py --reference <dir> [--counts]

timm (imported by the reference only for DropPath, to_2tuple and trunc_normal_) and, for ``--counts``, mmcv's
``ConvModule`` and the reference's Swin module are replaced by the small stand-ins below, injected into
``sys.modules``. The weights are not the reference's initialisation: every tensor of the state dict is redrawn by
``draw`` (nonzero biases, LayerNorm scales away from 1), so that a mapping error cannot hide behind zeros or ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
SALT = "geminifusion-golden-1"


# --- stand-ins for what the reference imports but the golden vectors do not need -----------------------------------

def to_2tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    return nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)


class DropPath(nn.Module):
    """timm's stochastic depth: the identity in eval mode or at drop probability 0."""

    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class ConvModule(nn.Module):
    """mmcv.cnn.ConvModule as SegFormerHead builds it (kernel 1, norm_cfg BN, default ReLU): a convolution without
    bias (mmcv's bias='auto' drops it before a norm), BatchNorm2d, ReLU; parameter names conv.* and bn.*."""

    def __init__(self, in_channels, out_channels, kernel_size, norm_cfg=None, **kwargs):
        super().__init__()
        assert norm_cfg is not None and norm_cfg["type"] == "BN" and not kwargs
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.activate(self.bn(self.conv(x)))


def install_stubs() -> None:
    timm = types.ModuleType("timm")
    timm_models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    layers.DropPath, layers.to_2tuple, layers.trunc_normal_ = DropPath, to_2tuple, trunc_normal_
    timm.models, timm_models.layers = timm_models, layers
    mmcv = types.ModuleType("mmcv")
    mmcv_cnn = types.ModuleType("mmcv.cnn")
    mmcv_cnn.ConvModule = ConvModule
    mmcv.cnn = mmcv_cnn
    swin = types.ModuleType("models.swin_transformer")  # segformer.py imports it; only the Swin backbones use it
    swin.SwinTransformer = None
    sys.modules.update({"timm": timm, "timm.models": timm_models, "timm.models.layers": layers, "mmcv": mmcv,
                        "mmcv.cnn": mmcv_cnn, "models.swin_transformer": swin})


# --- the weights ----------------------------------------------------------------------------------------------------

def draw(name: str, like: torch.Tensor) -> torch.Tensor:
    """Every tensor of the state dict from its reference name (the rule is also in tests/data/golden/README.md)."""
    if not like.is_floating_point():
        return like.clone()
    g = torch.Generator().manual_seed(zlib.crc32(f"{SALT}:{name}".encode()))
    shape = like.shape
    leaf = name.rsplit(".", 1)
    if ".ln_" in name and leaf[-1] == "weight":
        return 1 + 0.2 * torch.randn(shape, generator=g)
    if leaf[-1].endswith("bias"):  # bias, in_proj_bias
        return 0.1 * torch.randn(shape, generator=g)
    if "_noise." in name:  # the k/v noise embeddings
        return 0.5 * torch.randn(shape, generator=g)
    fan_in = like[0].numel() if like.dim() > 1 else 1
    return torch.randn(shape, generator=g) * math.sqrt(1.0 / fan_in)


def redraw(module: nn.Module) -> dict[str, torch.Tensor]:
    state = {name: draw(name, t) for name, t in module.state_dict().items()}
    module.load_state_dict(state, strict=True)
    return state


def as_arrays(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {f"state:{name}": t.detach().numpy() for name, t in state.items()}


# --- the two files --------------------------------------------------------------------------------------------------

BLOCK = dict(dim=32, num_heads=2, n_heads=8, sr_ratio=2, mlp_ratio=4, qkv_bias=True, batch=2, height=8, width=8)
ENCODER = dict(embed_dims=[16, 24, 32, 40], num_heads=[1, 2, 4, 8], depths=[2, 1, 1, 1], sr_ratios=[8, 4, 2, 1],
               mlp_ratios=[4, 4, 4, 4], qkv_bias=True, n_heads=8, patch_size=4, batch=2, in_chans=3, height=64,
               width=64)


def make_block(mt) -> dict[str, np.ndarray]:
    """One reference ``Block`` (LayerNormParallel norm1, GeminiFusion ``Attention``, norm2, Mix-FFN): its state dict,
    the attention alone on the inputs (``attn_y*``) and the whole block (``block_y*``)."""
    c = BLOCK
    torch.manual_seed(0)
    block = mt.Block(c["dim"], c["num_heads"], mlp_ratio=c["mlp_ratio"], qkv_bias=c["qkv_bias"],
                     sr_ratio=c["sr_ratio"], n_heads=c["n_heads"]).eval()
    state = redraw(block)
    g = torch.Generator().manual_seed(zlib.crc32(f"{SALT}:block-inputs".encode()))
    n = c["height"] * c["width"]
    x0 = torch.randn(c["batch"], n, c["dim"], generator=g)
    x1 = torch.randn(c["batch"], n, c["dim"], generator=g)
    with torch.no_grad():
        attn = block.attn([x0.clone(), x1.clone()], c["height"], c["width"])
        out = block([x0.clone(), x1.clone()], c["height"], c["width"])
    return {"x0": x0.numpy(), "x1": x1.numpy(), "attn_y0": attn[0].numpy(), "attn_y1": attn[1].numpy(),
            "block_y0": out[0].numpy(), "block_y1": out[1].numpy(), "config": np.array(json.dumps(c)),
            "salt": np.array(SALT), **as_arrays(state)}


def make_encoder(mt) -> dict[str, np.ndarray]:
    """The reference ``MixVisionTransformer`` with GeminiFusion attention at a tiny size, drop rates 0: its state dict
    and the four stages' outputs per modality (``y<m>_s<k>``, [B, C_k, H/2^(k+1), W/2^(k+1)])."""
    c = ENCODER
    torch.manual_seed(0)
    encoder = mt.MixVisionTransformer(
        patch_size=c["patch_size"], in_chans=c["in_chans"], embed_dims=c["embed_dims"], num_heads=c["num_heads"],
        mlp_ratios=c["mlp_ratios"], qkv_bias=c["qkv_bias"], depths=c["depths"], sr_ratios=c["sr_ratios"],
        drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0, n_heads=c["n_heads"]).eval()
    state = redraw(encoder)
    g = torch.Generator().manual_seed(zlib.crc32(f"{SALT}:encoder-inputs".encode()))
    shape = (c["batch"], c["in_chans"], c["height"], c["width"])
    x0, x1 = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    with torch.no_grad():
        outs0, outs1 = encoder([x0.clone(), x1.clone()])
    outputs = {f"y{m}_s{k + 1}": t.numpy() for m, outs in enumerate((outs0, outs1)) for k, t in enumerate(outs)}
    return {"x0": x0.numpy(), "x1": x1.numpy(), **outputs, "config": np.array(json.dumps(c)),
            "salt": np.array(SALT), **as_arrays(state)}


def count_parameters(mt, segformer, backbone: str, num_classes: int = 40, n_heads: int = 8) -> dict[str, int]:
    """WeTr's parameters (models/segformer.py: encoder, SegFormerHead with embedding_dim 256, alpha), built on the
    meta device: WeTr itself loads pretrained/<backbone>.pth in its constructor, so its three parts are built as it
    builds them."""
    linspace = torch.linspace  # the constructor's drop-path rates are read with .item(): made on the CPU
    torch.linspace = lambda *a, **k: linspace(*a, **{**k, "device": "cpu"})
    try:
        with torch.device("meta"):
            encoder = getattr(mt, backbone)(n_heads, 0.1, 0.0)
            decoder = segformer.SegFormerHead(feature_strides=[4, 8, 16, 32], in_channels=encoder.embed_dims,
                                              embedding_dim=256, num_classes=num_classes)
    finally:
        torch.linspace = linspace
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    fusion = sum(p.numel() for name, p in encoder.named_parameters()
                 if any(k in name for k in ("cross_attn", "relation_judger", "_noise")))
    return {"encoder": count(encoder), "decoder": count(decoder), "alpha": 2,
            "total": count(encoder) + count(decoder) + 2, "geminifusion_modules": fusion}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, type=Path, help="an extracted checkout of the reference")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--counts", action="store_true", help="also print WeTr's parameter counts (B3, B5, 40 cls)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    install_stubs()
    sys.path.insert(0, str(args.reference.resolve()))
    from models import mix_transformer as mt  # noqa: PLC0415 - the reference, found through --reference

    for name, make in (("block.npz", make_block), ("encoder.npz", make_encoder)):
        path = args.out / name
        np.savez_compressed(path, **make(mt))
        print(f"{name}: {path.stat().st_size} bytes, sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}")
    if args.counts:
        from models import segformer  # noqa: PLC0415

        for backbone in ("mit_b3", "mit_b5"):
            print(backbone, count_parameters(mt, segformer, backbone))


if __name__ == "__main__":
    main()
