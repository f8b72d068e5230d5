"""The Mix Transformer (MiT, SegFormer's encoder) on stacked modalities: every linear and convolution weight shared by
the modalities, every LayerNorm private per modality (TokenFusion's ``ModuleParallel`` / ``LayerNormParallel``), the
modalities run as one batch ``[M*B, ...]`` (``models/modal.py``).

Four stages, each an overlapping patch embedding (a strided convolution, then a LayerNorm) and transformer blocks of
spatial-reduction attention (keys and values from a ``sr``-strided convolution of the tokens) and a Mix-FFN (a 3×3
depth-wise convolution between the two linears); a stage's tokens are normalised and returned as a feature map at
strides 4, 8, 16 and 32. Sizes as SegFormer's ``mit_b0`` … ``mit_b5`` (the TokenFusion reference's
``models/mix_transformer.py``), and ``mit_mini`` for CPU tests (named in ``models/backbones/mit.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .modal import SharedByModalities, SharedConv2d, split_modalities

LAYER_NORM_EPS = 1e-6  # the reference's LayerNormParallel
TokenMix = Callable[[torch.Tensor], torch.Tensor]  # a block's attention output [M*B, N, C] -> the same shape


@dataclass(frozen=True)
class MiTSpec:
    embed_dims: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratio: int = 4
    decoder_dim: int = 256  # the all-MLP decoder's embedding width (TokenFusion's WeTr: 256)
    drop_path_rate: float = 0.1  # stochastic depth, rising linearly over the blocks to this

    def __post_init__(self):
        for dim, heads in zip(self.embed_dims, self.num_heads, strict=True):
            if dim % heads:
                raise ValueError(f"MiT stage width {dim} is not divisible by its {heads} attention heads")

    @property
    def out_channels(self) -> tuple[int, int, int, int]:
        return self.embed_dims

    def scaled(self, width: float) -> MiTSpec:
        """Every width times ``width``, rounded to a multiple of the stage's heads (at least one per head)."""
        def times(dim: int, heads: int) -> int:
            return heads * max(1, round(dim * width / heads))

        dims = tuple(times(d, h) for d, h in zip(self.embed_dims, self.num_heads, strict=True))
        return MiTSpec(dims, self.num_heads, self.depths, self.sr_ratios, self.mlp_ratio,
                       max(1, round(self.decoder_dim * width)), self.drop_path_rate)


class SharedLinear(SharedByModalities, nn.Linear):
    """A linear layer whose weights all modalities share (see ``SharedByModalities``)."""


class ModalLayerNorm(nn.Module):
    """One LayerNorm per modality over the last axis of ``[M*B, ..., C]``: normalised once for the whole stack, each
    modality's affine step broadcast over its slice (the same result as M calls, in one kernel)."""

    def __init__(self, num_features: int, num_modalities: int, eps: float = LAYER_NORM_EPS):
        super().__init__()
        self.num_modalities = num_modalities
        self.norms = nn.ModuleList(nn.LayerNorm(num_features, eps=eps) for _ in range(num_modalities))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_modalities == 1:
            return self.norms[0](x)
        normalised = split_modalities(F.layer_norm(x, x.shape[-1:], eps=self.norms[0].eps), self.num_modalities)
        shape = (self.num_modalities,) + (1,) * (x.dim() - 1) + (x.shape[-1],)
        return (normalised * self.gammas().view(shape) + self.betas().view(shape)).flatten(0, 1)

    def gammas(self) -> torch.Tensor:
        """The scaling factors, ``[M, C]`` (one row per modality)."""
        return torch.stack([norm.weight for norm in self.norms])

    def betas(self) -> torch.Tensor:
        return torch.stack([norm.bias for norm in self.norms])


def drop_path(x: torch.Tensor, probability: float, training: bool) -> torch.Tensor:
    """Stochastic depth: each row of the stack (a modality's sample) keeps its branch with ``1 - probability``,
    rescaled; the identity in eval. The reference draws per modality call, the same distribution."""
    if probability == 0.0 or not training:
        return x
    keep = 1.0 - probability
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


def tokens_to_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[N', H*W, C]`` -> ``[N', C, H, W]``."""
    return tokens.transpose(1, 2).unflatten(2, (height, width))


class OverlapPatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, patch: int, stride: int, num_modalities: int):
        super().__init__()
        self.proj = SharedConv2d(in_channels, dim, patch, stride=stride, padding=patch // 2,
                                 num_modalities=num_modalities)
        self.norm = ModalLayerNorm(dim, num_modalities)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class EfficientAttention(nn.Module):
    """Multi-head attention whose keys and values come from the tokens reduced ``sr``-fold per side by a strided
    convolution (then a private LayerNorm)."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, num_modalities: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = SharedLinear(dim, dim, num_modalities=num_modalities)
        self.kv = SharedLinear(dim, 2 * dim, num_modalities=num_modalities)
        self.proj = SharedLinear(dim, dim, num_modalities=num_modalities)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = SharedConv2d(dim, dim, sr_ratio, stride=sr_ratio, num_modalities=num_modalities)
            self.norm = ModalLayerNorm(dim, num_modalities)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        rows, tokens, dim = x.shape
        q = self.q(x).unflatten(2, (self.num_heads, -1)).transpose(1, 2)
        if self.sr_ratio > 1:
            x = self.norm(self.sr(tokens_to_map(x, height, width)).flatten(2).transpose(1, 2))
        k, v = self.kv(x).unflatten(2, (2, self.num_heads, -1)).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v, as the reference
        return self.proj(attended.transpose(1, 2).reshape(rows, tokens, dim))


class MixFFN(nn.Module):
    def __init__(self, dim: int, hidden: int, num_modalities: int):
        super().__init__()
        self.fc1 = SharedLinear(dim, hidden, num_modalities=num_modalities)
        self.dwconv = SharedConv2d(hidden, hidden, 3, padding=1, groups=hidden, num_modalities=num_modalities)
        self.fc2 = SharedLinear(hidden, dim, num_modalities=num_modalities)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = self.fc1(x)
        x = self.dwconv(tokens_to_map(x, height, width)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(x))


class MiTBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, sr_ratio: int, drop_path_rate: float,
                 num_modalities: int):
        super().__init__()
        self.norm1 = ModalLayerNorm(dim, num_modalities)
        self.attn = EfficientAttention(dim, num_heads, sr_ratio, num_modalities)
        self.norm2 = ModalLayerNorm(dim, num_modalities)
        self.mlp = MixFFN(dim, dim * mlp_ratio, num_modalities)
        self.drop_path_rate = drop_path_rate

    def forward(self, x: torch.Tensor, height: int, width: int, mix: TokenMix | None = None) -> torch.Tensor:
        """``mix`` (TokenFusion's exchange) rewrites the attention branch's output before the residual sum."""
        attended = self.attn(self.norm1(x), height, width)
        if mix is not None:
            attended = mix(attended)
        x = x + drop_path(attended, self.drop_path_rate, self.training)
        return x + drop_path(self.mlp(self.norm2(x), height, width), self.drop_path_rate, self.training)


class MiTEncoder(nn.Module):
    """Four stages on the stacked modalities ``[M*B, C, H, W]``; returns the stage outputs at strides 4 to 32."""

    PATCHES = ((7, 4), (3, 2), (3, 2), (3, 2))  # (kernel, stride) of each stage's patch embedding

    def __init__(self, spec: MiTSpec, num_modalities: int, in_channels: int = 3):
        super().__init__()
        self.spec = spec
        blocks = sum(spec.depths)  # the rates of torch.linspace(0, rate, blocks), as the reference (here on any device)
        rates = [spec.drop_path_rate * i / max(1, blocks - 1) for i in range(blocks)]
        widths = (in_channels, *spec.embed_dims)
        first = 0
        for stage, (depth, (patch, stride)) in enumerate(zip(spec.depths, self.PATCHES, strict=True), start=1):
            dim = spec.embed_dims[stage - 1]
            setattr(self, f"patch_embed{stage}",
                    OverlapPatchEmbed(widths[stage - 1], dim, patch, stride, num_modalities))
            setattr(self, f"block{stage}", nn.ModuleList(
                MiTBlock(dim, spec.num_heads[stage - 1], spec.mlp_ratio, spec.sr_ratios[stage - 1], rates[first + i],
                         num_modalities) for i in range(depth)))
            setattr(self, f"norm{stage}", ModalLayerNorm(dim, num_modalities))
            first += depth
        self.apply(init_weights)

    def stage(self, index: int) -> tuple[OverlapPatchEmbed, nn.ModuleList, ModalLayerNorm]:
        return getattr(self, f"patch_embed{index}"), getattr(self, f"block{index}"), getattr(self, f"norm{index}")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for index in range(1, 5):
            embed, blocks, norm = self.stage(index)
            tokens, height, width = embed(x)
            for block in blocks:
                tokens = block(tokens, height, width, self.token_mix(index, tokens))
            x = tokens_to_map(norm(tokens), height, width).contiguous()
            features.append(x)
        return features

    def token_mix(self, stage: int, tokens: torch.Tensor) -> TokenMix | None:
        """What rewrites the attention output of the next block of ``stage`` (1-4), given its input ``tokens``; none
        here (TokenFusion's encoder exchanges tokens)."""
        return None


def init_weights(module: nn.Module) -> None:
    """As the reference (SegFormer's): truncated-normal linears, unit LayerNorms, He-normal convolutions by fan-out."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
