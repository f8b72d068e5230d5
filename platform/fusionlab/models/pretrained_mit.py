"""SegFormer's ImageNet Mix Transformer files (``mit_b0.pth`` ... ``mit_b5.pth``) onto fusionlab's MiT encoders.

The official file is the state dict of one single-modality ``MixVisionTransformer`` (NVlabs/SegFormer's names):
``patch_embed1.proj.weight``, ``patch_embed1.norm.weight``, ``block1.0.norm1.weight``, ``block1.0.attn.q.weight``,
``block1.0.attn.kv.weight``, ``block1.0.attn.sr.weight``, ``block1.0.attn.norm.weight`` (stages with ``sr > 1``),
``block1.0.attn.proj.weight``, ``block1.0.norm2.weight``, ``block1.0.mlp.fc1.weight``,
``block1.0.mlp.dwconv.dwconv.weight``, ``block1.0.mlp.fc2.weight``, ``norm1.weight`` (each with its ``.bias``), and
the ImageNet classifier ``head.*``, which is dropped. fusionlab's names are the same but for two things: every
LayerNorm is a ``ModalLayerNorm`` (``patch_embed1.norm.norms.{m}.weight``: each modality's copy receives the file's
LayerNorm) and the depth-wise convolution is not wrapped (``block1.0.mlp.dwconv.weight``).

The TokenFusion reference (yikaiw/TokenFusion ``semantic_segmentation/models/segformer.py``: ``WeTr.__init__``,
``expand_state_dict``) loads the same file: it pops ``head.weight``/``head.bias``, strips ``module.`` (its
``ModuleParallel`` wrapper, ``patch_embed1.proj.module.weight``) and ``.ln_{m}`` (its ``LayerNormParallel`` copies,
``norm1.ln_0.weight``) from its own names to find each one in the file. A file in those multimodal names loads too:
``.module.`` is dropped and ``.ln_{m}`` goes to modality m's copy only. What is not part of the MiT itself
(TokenFusion's score predictors) keeps its initialisation, as in the reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .mit import MiTEncoder, MiTSpec
from .pretrained_errors import PretrainedWeightsError, preview

_MODALITY_NORM = re.compile(r"\.norms\.(\d+)\.")  # fusionlab's ModalLayerNorm copies
_REFERENCE_NORM = re.compile(r"\.ln_(\d+)\.")  # the reference's LayerNormParallel copies
_REFERENCE_WRAPPER = ".module."  # the reference's ModuleParallel
_OWN_PARTS = re.compile(r"(patch_embed|block|norm)[1-4]\.")  # the MiT's own keys (not a subclass's additions)
_STEM = "patch_embed1.proj.weight"
IGNORED_PREFIX = "head."  # the ImageNet classifier


def segformer_name(key: str) -> tuple[str, int | None]:
    """A fusionlab MiT key's official SegFormer name, and the modality whose LayerNorm copy it is (None: shared)."""
    match = _MODALITY_NORM.search(key)
    name = _MODALITY_NORM.sub(".", key).replace(".mlp.dwconv.", ".mlp.dwconv.dwconv.")
    return name, None if match is None else int(match.group(1))


def _file_name(key: str) -> tuple[str, int | None]:
    """A file's key in the official name (reference names tolerated), and the modality its LayerNorm belongs to."""
    name = key.replace(_REFERENCE_WRAPPER, ".")
    match = _REFERENCE_NORM.search(name)
    return _REFERENCE_NORM.sub(".", name), None if match is None else int(match.group(1))


def mit_state_from_segformer(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                             origin: str = "state dict") -> dict[str, torch.Tensor]:
    """Map a SegFormer MiT ImageNet state dict (module docstring) onto a MiT encoder's ``target`` state dict (keys
    and shapes): the tensors of the encoder's own keys; ``PretrainedWeightsError`` on a missing, unexpected or
    mis-shaped key. An early-concat stem (``M * 3`` input channels) gets the RGB filters tiled M times over M."""
    by_name = {_file_name(key): key for key in source if not key.startswith(IGNORED_PREFIX)}
    chosen: dict[str, str] = {}
    missing = []
    for key in target:
        if not _OWN_PARTS.match(key):
            continue
        name, modality = segformer_name(key)
        found = by_name.get((name, modality)) or by_name.get((name, None))
        if found is None:
            missing.append(name)
        else:
            chosen[key] = found
    used = set(chosen.values())
    unexpected = sorted(key for key in source if key not in used and not key.startswith(IGNORED_PREFIX))
    if missing or unexpected:
        problems = [f"{what} [{preview(sorted(set(keys)))}]" for what, keys in
                    (("missing encoder keys", missing), ("unexpected keys", unexpected)) if keys]
        raise PretrainedWeightsError(f"{origin} does not match the Mix Transformer encoder (SegFormer's names): "
                                     + "; ".join(problems))
    state, misshaped = {}, []
    for key, source_key in chosen.items():
        value, expected = source[source_key], target[key].shape
        if key == _STEM and value.dim() == 4 and value.shape[1] and expected[1] % value.shape[1] == 0:
            repeats = expected[1] // value.shape[1]
            value = value.repeat(1, repeats, 1, 1) / repeats
        if value.shape != expected:
            misshaped.append(f"{source_key} has shape {list(value.shape)}, the encoder's {key} needs {list(expected)}")
        state[key] = value
    if misshaped:
        more = f"; ... ({len(misshaped) - 8} more)" if len(misshaped) > 8 else ""
        raise PretrainedWeightsError(f"{origin}: " + "; ".join(misshaped[:8]) + more)
    return state


def mit_weight_keys(spec: MiTSpec) -> dict[str, tuple[int, ...]]:
    """The keys, with their shapes, the official ImageNet file of a MiT of ``spec`` holds (``head.*`` aside)."""
    with torch.device("meta"):
        encoder = MiTEncoder(spec, 1)
    return {segformer_name(key)[0]: tuple(value.shape) for key, value in encoder.state_dict().items()}
