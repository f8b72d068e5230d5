"""Writes tokenfusion_counts.json: parameter counts of the TokenFusion reference's NYUDv2 segmenter (``WeTr``, 40
classes, decoder width 256, two modalities), counted by building the reference's own modules (on the CPU: its
stochastic-depth rates call ``Tensor.item``, which the meta device cannot).

    python tests/models/data/make_tokenfusion_counts.py /path/to/TokenFusion   # a checkout of github yikaiw/TokenFusion

The reference imports timm (DropPath, to_2tuple, trunc_normal_) and mmcv (ConvModule), neither of which holds a
parameter the count needs from them: they are replaced by stand-ins with the same parameters (a ConvModule with a BN
norm is a bias-free convolution, a BatchNorm2d and a ReLU). Recorded per backbone: the whole model, its encoder, the
encoder's score predictors (TokenFusion's own), the decoder and the ensemble's alpha.
"""

import json
import sys
import types
from pathlib import Path

from torch import nn


def stand_ins() -> None:
    layers = types.ModuleType("timm.models.layers")

    class DropPath(nn.Module):
        def __init__(self, drop_prob=0.0):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):
            return x

    layers.DropPath = DropPath
    layers.to_2tuple = lambda x: x if isinstance(x, tuple) else (x, x)
    layers.trunc_normal_ = lambda tensor, std=1.0: tensor
    cnn = types.ModuleType("mmcv.cnn")

    class ConvModule(nn.Sequential):
        def __init__(self, in_channels, out_channels, kernel_size, norm_cfg=None):
            super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, bias=norm_cfg is None),
                             *([nn.BatchNorm2d(out_channels)] if norm_cfg else []), nn.ReLU())

    cnn.ConvModule = ConvModule
    for name, module in {"timm": types.ModuleType("timm"), "timm.models": types.ModuleType("timm.models"),
                         "timm.models.layers": layers, "mmcv": types.ModuleType("mmcv"), "mmcv.cnn": cnn}.items():
        sys.modules[name] = module


def main(reference: Path) -> None:
    stand_ins()
    sys.path.insert(0, str(reference / "semantic_segmentation"))
    from models.segformer import WeTr  # the reference's

    counts = {}
    for backbone in ("mit_b0", "mit_b1", "mit_b2"):
        model = WeTr(backbone, num_classes=40, embedding_dim=256, pretrained=False)

        def total(module):
            return sum(p.numel() for p in module.parameters())

        counts[backbone] = {"model": total(model), "encoder": total(model.encoder),
                            "score_predictors": total(model.encoder.score_predictor),
                            "decoder": total(model.decoder), "alpha": model.alpha.numel()}
    out = Path(__file__).with_name("tokenfusion_counts.json")
    out.write_text(json.dumps({"source": "github.com/yikaiw/TokenFusion semantic_segmentation/models (WeTr, "
                                         "num_classes=40, embedding_dim=256), counted by "
                                         "tests/models/data/make_tokenfusion_counts.py",
                               "counts": counts}, indent=2) + "\n")
    print(json.dumps(counts, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
