"""GeminiFusion (Jia et al., ICML 2024) on the Mix Transformer: in every block, each modality's attention output
attends, pixel by pixel, over itself and the other modalities' outputs at the same position.

Public names (kept stable): ``GeminiFusionNet`` (the segmenter, registered as ``geminifusion``),
``GeminiFusionEncoder`` (the MiT with the fusion), ``CrossModalAttention`` (one block's fusion), ``reference_key`` /
``map_reference_state`` (the reference's state-dict names onto these).

As the reference (github JiaDingCN/GeminiFusion, commit 1f102f6, ``models/mix_transformer.py``: ``Attention``), in
every block of every stage, after each modality's spatial-reduction self-attention and before the shared output
projection: for modality i and the other modality j, a relation judger (one per block, shared by both directions)
r = softmax_C(fc2(GELU(fc1(cat[x_i, x_j])))), then

    x_i <- x_i + MHA_i(query x_i; keys [x_i + k_noise[i], x_i * r], values [x_i + v_noise[i], x_j])

with ``MHA_i`` an 8-head ``nn.MultiheadAttention`` of modality i's own, over the 2 keys of each pixel (the reference
runs it per sample with the pixels as its batch; here one batched computation for every modality, sample and pixel,
in ``nn.MultiheadAttention``'s weight layout), and ``k_noise`` / ``v_noise`` learned ``nn.Embedding(M, C)`` rows (the
same in training and evaluation). Shared by the modalities, as every MiT weight: q, kv, sr, proj, the Mix-FFN and the
judger; private: every LayerNorm, and per direction the attention and the noise rows: 11 C^2 + 14 C parameters a
block for two modalities. The ensemble is TokenFusion's (the reference's ``WeTr``: softmax(alpha), alpha in no
optimiser group, so ``fixed`` is the reference's 0.5/0.5).

For M > 2 (fusionlab's generalisation; the reference has two modalities): modality i's keys are
[x_i + k_noise[i], x_i * r_ij for each j != i] and its values [x_i + v_noise[i], x_j for each j != i], r_ij the shared
judger on cat[x_i, x_j], the noise tables M rows: M keys per pixel, the reference's for M = 2.

The fusion modules live beside the blocks (``encoder.fusion{stage}.{block}``), not inside them, so the MiT's own
keys stay SegFormer's and its ImageNet file loads as into any MiT; each is called by a forward pre-hook on its block's
``attn.proj``, i.e. on the heads' output just before the shared projection (``GeminiFusionEncoder``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbone_registry import get_backbone
from .fusion import FusionModel
from .mit import MiTEncoder, MiTSpec, init_weights
from .modal import split_modalities
from .params import GeminiFusionParams
from .registry import register_model
from .segmenter import FusionSegmenter

REFERENCE_HEADS = 8  # main.py's --n_heads
REFERENCE_DROP_PATH = 0.4  # main.py's --dpr default (its MiT-B3 commands)
REFERENCE_DROP_PATH_BY_BACKBONE = {"mit_b5": 0.35}  # the README's MiT-B5 commands: --dpr 0.35


class RelationJudger(nn.Module):
    """softmax over channels of fc2(GELU(fc1(cat[x_i, x_j]))): how much of x_i each channel keys on (the reference's
    ``relation_judger``: ``Mlp_2(2C, C, C)`` then ``Softmax(dim=-1)``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(2 * dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.fc2(F.gelu(self.fc1(pair))), dim=-1)


class CrossModalAttention(nn.Module):
    """One block's pixel-wise cross-modal attention on the heads' outputs ``[M*B, N, C]`` (module docstring):
    ``cross_attn[i]`` is modality i's ``nn.MultiheadAttention`` (the reference's ``cross_attn_0_to_1`` for i = 0,
    ``cross_attn_1_to_0`` for i = 1), used for its weights only: ``forward`` computes every modality's attention as
    one batched contraction."""

    def __init__(self, dim: int, num_modalities: int, heads: int = REFERENCE_HEADS):
        super().__init__()
        if num_modalities < 2:
            raise ValueError(f"GeminiFusion attends across modalities: it needs 2 or more, got {num_modalities}")
        if dim % heads:
            raise ValueError(f"GeminiFusion's cross-modal attention: width {dim} is not divisible by {heads} heads")
        self.num_modalities, self.heads = num_modalities, heads
        self.judger = RelationJudger(dim)
        self.cross_attn = nn.ModuleList(nn.MultiheadAttention(dim, heads) for _ in range(num_modalities))
        self.k_noise = nn.Embedding(num_modalities, dim)  # N(0, 1), as the reference's
        self.v_noise = nn.Embedding(num_modalities, dim)
        others = [[j for j in range(num_modalities) if j != i] for i in range(num_modalities)]
        self.register_buffer("others", torch.tensor(others, dtype=torch.long), persistent=False)

    def keys_and_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``[M, B, N, C]`` -> each modality's keys and values ``[M, T, B, N, C]``, T = M (own noised first)."""
        own = x.unsqueeze(1).expand(-1, self.num_modalities - 1, -1, -1, -1)
        other = x[self.others]  # [M, M-1, B, N, C]: x_j for each j != i
        relation = self.judger(torch.cat([own, other], dim=-1))
        keys = torch.cat([(x + self.k_noise.weight[:, None, None]).unsqueeze(1), own * relation], dim=1)
        values = torch.cat([(x + self.v_noise.weight[:, None, None]).unsqueeze(1), other], dim=1)
        return keys, values

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = split_modalities(tokens, self.num_modalities)  # [M, B, N, C]
        keys, values = self.keys_and_values(x)
        in_weight = torch.stack([attn.in_proj_weight for attn in self.cross_attn])  # [M, 3C, C]
        in_bias = torch.stack([attn.in_proj_bias for attn in self.cross_attn])
        (w_q, w_k, w_v), (b_q, b_k, b_v) = in_weight.chunk(3, dim=1), in_bias.chunk(3, dim=1)
        q = torch.einsum("mbnc,mdc->mbnd", x, w_q) + b_q[:, None, None]
        k = torch.einsum("mtbnc,mdc->mtbnd", keys, w_k) + b_k[:, None, None, None]
        v = torch.einsum("mtbnc,mdc->mtbnd", values, w_v) + b_v[:, None, None, None]
        q, k, v = (part.unflatten(-1, (self.heads, -1)) for part in (q, k, v))
        scale = q.shape[-1] ** -0.5  # nn.MultiheadAttention scales the queries
        weights = torch.einsum("mbnhe,mtbnhe->mbnht", q * scale, k).softmax(dim=-1)
        attended = torch.einsum("mbnht,mtbnhe->mbnhe", weights, v).flatten(-2)
        out_weight = torch.stack([attn.out_proj.weight for attn in self.cross_attn])
        out_bias = torch.stack([attn.out_proj.bias for attn in self.cross_attn])
        out = torch.einsum("mbnd,mcd->mbnc", attended, out_weight) + out_bias[:, None, None]
        return (x + out).flatten(0, 1)

    def before_projection(self, module: nn.Module, args: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        """A forward pre-hook of the block's ``attn.proj``: the heads' output, fused."""
        return (self(args[0]),)


class GeminiFusionEncoder(MiTEncoder):
    """The MiT with a ``CrossModalAttention`` per block (``fusion{stage}[block]``), called by a forward pre-hook on
    the block's ``attn.proj``: MiTEncoder.forward runs unchanged, the heads' output fused before the projection (so
    any call of a block's ``attn.proj`` fuses its input: write the projection out, ``F.linear``, to project alone)."""

    def __init__(self, spec: MiTSpec, num_modalities: int, in_channels: int = 3, heads: int = REFERENCE_HEADS):
        if num_modalities < 2:
            raise ValueError(f"GeminiFusion attends across modalities: it needs 2 or more, got {num_modalities}")
        super().__init__(spec, num_modalities, in_channels)
        for stage, (depth, dim) in enumerate(zip(spec.depths, spec.embed_dims, strict=True), start=1):
            fusions = nn.ModuleList(CrossModalAttention(dim, num_modalities, heads) for _ in range(depth))
            fusions.apply(init_weights)  # the reference's _init_weights: its linears (out_proj too) truncated-normal
            setattr(self, f"fusion{stage}", fusions)
            for block, fusion in zip(self.stage(stage)[1], fusions, strict=True):
                block.attn.proj.register_forward_pre_hook(fusion.before_projection)


class GeminiFusionNet(FusionSegmenter):
    """GeminiFusion's segmenter (the reference's ``WeTr``): the fusing MiT, SegFormer's decoder shared by the branches,
    the alpha ensemble (``fixed``: alpha never trained, as the reference leaves it out of its optimiser)."""

    def __init__(self, spec: MiTSpec, num_classes: int, modalities: Sequence[str], *, heads: int = REFERENCE_HEADS,
                 drop_path: float = REFERENCE_DROP_PATH, ensemble: str = "learned", in_channels: int = 3):
        if not isinstance(spec, MiTSpec):
            raise ValueError(f"geminifusion runs on a Mix Transformer backbone (mit_*), got {type(spec).__name__}")
        if ensemble not in ("fixed", "learned"):
            raise ValueError(f"ensemble must be 'fixed' or 'learned', got {ensemble!r}")
        super().__init__(dataclasses.replace(spec, drop_path_rate=drop_path), num_classes, modalities,
                         in_channels=in_channels, encoder_class=functools.partial(GeminiFusionEncoder, heads=heads))
        self.alpha.requires_grad_(ensemble == "learned")

    def fusion_points(self) -> list[str]:
        return [f"encoder.block{stage}.*.attn (cross-modal attention)" for stage in range(1, 5)]


def reference_drop_path(backbone: str | MiTSpec) -> float:
    """The reference's stochastic depth for ``backbone``: 0.35 for MiT-B5 (its README), 0.4 (main.py) otherwise."""
    if isinstance(backbone, str):
        return REFERENCE_DROP_PATH_BY_BACKBONE.get(backbone, REFERENCE_DROP_PATH)
    return REFERENCE_DROP_PATH


@register_model(params=GeminiFusionParams, families=("mit",), min_modalities=2)
def geminifusion(*, backbone: str | MiTSpec, num_classes: int, modalities: Sequence[str],
                 heads: int = GeminiFusionParams.heads, drop_path: float | None = GeminiFusionParams.drop_path,
                 ensemble: str = GeminiFusionParams.ensemble, in_channels: int = 3) -> FusionModel:
    """GeminiFusion on a Mix Transformer backbone: pixel-wise cross-modal attention in every block; ``drop_path``
    None: the reference's for the backbone (``reference_drop_path``)."""
    rate = reference_drop_path(backbone) if drop_path is None else drop_path
    return GeminiFusionNet(get_backbone(backbone), num_classes, modalities, heads=heads, drop_path=rate,
                           ensemble=ensemble, in_channels=in_channels)


# The reference's names (its WeTr: ``encoder.`` + MixVisionTransformer, ``decoder.`` + SegFormerHead, ``alpha``) ->
# fusionlab's, applied in order.
_REFERENCE_RULES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = tuple(
    (re.compile(pattern), target) for pattern, target in (
        (r"block(\d+)\.(\d+)\.attn\.cross_attn_(\d+)_to_\d+\.", r"fusion\1.\2.cross_attn.\3."),
        (r"block(\d+)\.(\d+)\.attn\.relation_judger\.0\.", r"fusion\1.\2.judger."),
        (r"block(\d+)\.(\d+)\.attn\.([kv]_noise)\.", r"fusion\1.\2.\3."),
        (r"\.module\.", "."),  # ModuleParallel
        (r"\.ln_(\d+)\.", r".norms.\1."),  # LayerNormParallel
        (r"\.mlp\.dwconv\.dwconv\.", ".mlp.dwconv."),
        (r"linear_c([1-4])\.proj\.", lambda match: f"linear_c.{int(match.group(1)) - 1}."),  # c1..c4 -> 0..3
        (r"linear_fuse\.conv\.", "linear_fuse."),  # mmcv's ConvModule
        (r"linear_fuse\.bn\.", "fuse_bn.bns.0."),
    ))


def reference_key(key: str) -> str:
    """One GeminiFusion reference key -> fusionlab's ``geminifusion`` key, with the same prefix: the WeTr's
    (``encoder.block1.0.attn.cross_attn_0_to_1.in_proj_weight`` -> ``encoder.fusion1.0.cross_attn.0.in_proj_weight``,
    ``encoder.block1.0.attn.relation_judger.0.fc1.weight`` -> ``encoder.fusion1.0.judger.fc1.weight``,
    ``encoder.block1.0.attn.k_noise.weight`` -> ``encoder.fusion1.0.k_noise.weight``,
    ``encoder.block1.0.attn.q.module.weight`` -> ``encoder.block1.0.attn.q.weight``,
    ``encoder.block1.0.norm1.ln_1.weight`` -> ``encoder.block1.0.norm1.norms.1.weight``,
    ``decoder.linear_c4.proj.weight`` -> ``decoder.linear_c.3.weight``, ``decoder.linear_fuse.bn.running_mean`` ->
    ``decoder.fuse_bn.bns.0.running_mean``), or its MixVisionTransformer's alone (no ``encoder.``; a single reference
    ``Block``'s keys: prefix them with ``block{stage}.{index}.`` first); a leading ``module.``
    (DistributedDataParallel's) is dropped."""
    key = key.removeprefix("module.")
    for pattern, target in _REFERENCE_RULES:
        key = pattern.sub(target, key)
    return key


def map_reference_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A reference state dict (a WeTr's, or its encoder's alone) in fusionlab's names (``reference_key``); its keys
    then load strictly into ``geminifusion`` (or its ``encoder``) for two modalities."""
    mapped = {reference_key(key): value for key, value in state.items()}
    if len(mapped) != len(state):
        raise ValueError("two reference keys map to the same fusionlab key")
    return mapped
