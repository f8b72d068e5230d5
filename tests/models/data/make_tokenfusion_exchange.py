"""Writes tokenfusion_exchange.npz: golden vectors of TokenFusion's token exchange, made by running the reference's
own ``TokenExchange`` (semantic_segmentation/models/modules.py) after the masking its ``Attention.forward`` applies
(``x_m * mask_m``), on fixed random tokens and keep scores, at the reference's threshold 0.02.

    python tests/models/data/make_tokenfusion_exchange.py /path/to/TokenFusion  # github yikaiw/TokenFusion

Scores are drawn so that some fall on either side of the threshold and a few sit exactly on it (kept: ``>=``).
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

THRESHOLD = 0.02  # hard-coded in the reference's Attention.forward


def main(reference: Path) -> None:
    spec = importlib.util.spec_from_file_location("tokenfusion_modules",
                                                  reference / "semantic_segmentation" / "models" / "modules.py")
    modules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(modules)
    generator = torch.Generator().manual_seed(0)
    batch, tokens, channels = 2, 12, 5
    x = [torch.randn(batch, tokens, channels, generator=generator) for _ in range(2)]
    masks = [torch.rand(batch, tokens, generator=generator) * 0.06 for _ in range(2)]  # about a third below 0.02
    masks[0][0, :2] = THRESHOLD
    # as Attention.forward, before the exchange
    masked = [x_ * mask_.unsqueeze(2) for x_, mask_ in zip(x, masks, strict=True)]
    out = modules.TokenExchange()(masked, masks, mask_threshold=THRESHOLD)
    path = Path(__file__).with_name("tokenfusion_exchange.npz")
    np.savez(path, x=torch.stack(x).numpy(), keep=torch.stack(masks).numpy(), out=torch.stack(out).numpy(),
             threshold=np.float64(THRESHOLD))
    print(f"wrote {path}: {int((torch.stack(masks) < THRESHOLD).sum())} of {2 * batch * tokens} tokens exchanged")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
