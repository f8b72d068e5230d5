"""TokenFusion (Wang et al., CVPR 2022) on the Mix Transformer: tokens a modality scores as uninformative are replaced
by the other modalities' tokens at the same position, inside every block.

As the reference (github yikaiw/TokenFusion, semantic_segmentation/models/mix_transformer.py): each stage has one
score predictor, a small MLP per modality (private) on the block's input tokens giving a keep score in [0, 1] per
token; in each block the attention branch's output is multiplied by its modality's scores, and where a score is
below the threshold θ the token is taken from the other modality's (scored) output instead, before the residual sum.
The L1 penalty is λ times the sum of every score (the scores of every block, modality, sample and token), added to
the loss once. For M > 2 a replaced token is the mean of the other modalities' (fusionlab's allocation, as CEN's
channels; for M = 2 it is the other modality's token exactly). MiT has no positional embeddings, so the paper's
residual positional alignment (for ViTs) has nothing to act on here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .mit import MiTEncoder, MiTSpec, TokenMix, init_weights
from .modal import mean_of_others, split_modalities
from .segmenter import FusionSegmenter

REFERENCE_THRESHOLD = 0.02  # hard-coded in the reference's Attention.forward


def exchange_tokens(x: torch.Tensor, keep: torch.Tensor, threshold: float) -> torch.Tensor:
    """``x`` ``[M, B, N, C]`` (a block's attention outputs per modality), ``keep`` ``[M, B, N]`` (their scores): each
    token scaled by its score, then those scored below ``threshold`` replaced by the others' scaled tokens (one
    batched ``where``)."""
    scored = x * keep.unsqueeze(-1)
    return torch.where((keep < threshold).unsqueeze(-1), mean_of_others(scored), scored)


class ScorePredictor(nn.Module):
    """One stage's keep scores: per modality (private weights) LayerNorm -> 3 GELU-separated linears narrowing to
    ``C/4`` -> 2 logits; the score is the first logit's softmax probability (the reference's ``PredictorLG``)."""

    def __init__(self, dim: int, num_modalities: int):
        super().__init__()
        self.nets = nn.ModuleList(nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim // 2), nn.GELU(),
            nn.Linear(dim // 2, dim // 4), nn.GELU(), nn.Linear(dim // 4, 2)) for _ in range(num_modalities))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[M*B, N, C]`` -> ``[M, B, N]``."""
        parts = tokens.chunk(len(self.nets))
        return torch.stack([F.softmax(net(part), dim=-1)[..., 0] for net, part in zip(self.nets, parts, strict=True)])


class TokenFusionEncoder(MiTEncoder):
    """The MiT with a score predictor per stage and the token exchange in every block (see the module docstring).

    ``scores`` holds the last forward's scores (for the penalty); the exchanged share of each stage's tokens is
    counted over every forward until ``exchange_fractions`` reads and restarts it."""

    def __init__(self, spec: MiTSpec, num_modalities: int, in_channels: int = 3,
                 threshold: float = REFERENCE_THRESHOLD):
        super().__init__(spec, num_modalities, in_channels)
        if num_modalities < 2:
            raise ValueError(f"TokenFusion exchanges tokens between modalities: it needs 2 or more, got "
                             f"{num_modalities}")
        self.threshold = threshold
        self.score_predictor = nn.ModuleList(ScorePredictor(dim, num_modalities) for dim in spec.embed_dims)
        self.score_predictor.apply(init_weights)  # the reference initialises its predictors as the rest
        self.register_buffer("exchanged_tokens", torch.zeros(4, dtype=torch.float64), persistent=False)
        self.register_buffer("seen_tokens", torch.zeros(4, dtype=torch.float64), persistent=False)
        self.scores: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.scores = []
        return super().forward(x)

    def token_mix(self, stage: int, tokens: torch.Tensor) -> TokenMix:
        """Score the block's input ``tokens`` with the stage's predictor; the block's attention output is then scaled
        by the scores and its low-scored tokens exchanged."""
        keep = self.score_predictor[stage - 1](tokens)
        self.scores.append(keep)
        self._count(stage - 1, keep)
        num_modalities = keep.shape[0]
        return lambda attended: exchange_tokens(split_modalities(attended, num_modalities), keep,
                                                self.threshold).flatten(0, 1)

    @torch.no_grad()
    def _count(self, stage: int, keep: torch.Tensor) -> None:
        self.exchanged_tokens[stage] += (keep < self.threshold).sum()
        self.seen_tokens[stage] += keep.numel()

    def exchange_fractions(self) -> dict[str, float]:
        """Per stage, the share of (modality, token) pairs exchanged since the last call; counting restarts."""
        fractions = {f"stage{stage + 1}": float(self.exchanged_tokens[stage] / self.seen_tokens[stage])
                     for stage in range(4) if self.seen_tokens[stage] > 0}
        self.exchanged_tokens.zero_()
        self.seen_tokens.zero_()
        return fractions


class TokenFusionNet(FusionSegmenter):
    """TokenFusion's segmenter (the reference's ``WeTr``): the token-exchanging MiT, SegFormer's decoder shared by the
    branches, the alpha ensemble (``fixed``: alpha never trained, as the reference leaves it out of its optimiser);
    ``regularization_loss`` is ``l1_lambda`` times the sum of the last forward's scores."""

    def __init__(self, spec: MiTSpec, num_classes: int, modalities: Sequence[str], *, threshold: float,
                 l1_lambda: float, ensemble: str = "learned", in_channels: int = 3):
        if not isinstance(spec, MiTSpec):
            raise ValueError(f"tokenfusion runs on a Mix Transformer backbone (mit_*), got {type(spec).__name__}")
        super().__init__(spec, num_classes, modalities, in_channels=in_channels,
                         encoder_class=functools.partial(TokenFusionEncoder, threshold=threshold))
        self.l1_lambda = l1_lambda
        if ensemble not in ("fixed", "learned"):
            raise ValueError(f"ensemble must be 'fixed' or 'learned', got {ensemble!r}")
        self.alpha.requires_grad_(ensemble == "learned")

    def regularization_loss(self) -> torch.Tensor:
        if not self.encoder.scores or self.l1_lambda == 0:
            return next(self.parameters()).new_zeros(())
        return self.l1_lambda * torch.stack([keep.abs().sum() for keep in self.encoder.scores]).sum()

    def fusion_points(self) -> list[str]:
        return [f"encoder.block{stage}.*.attn (token exchange)" for stage in range(1, 5)]

    def exchange_fractions(self) -> dict[str, float]:
        return self.encoder.exchange_fractions()
