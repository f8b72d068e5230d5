"""Load ImageNet weights into any fusion model's encoder(s): ResNets in torchvision's naming, Xceptions in
fusionlab's, Mix Transformers in SegFormer's (``models/pretrained_mit.py``: the official ``mit_bX.pth``). Which
mapping applies is the encoder's family's (``BackboneFamily.imagenet_state``, registered in ``models/backbones/``).

A file is a PyTorch state dict (``torch.save``; read with ``weights_only=True``) of one single-modality encoder: for a
ResNet torchvision's own file (``conv1.weight``, ``layer1.0.bn2.running_mean``, ...); for an Xception the state dict
of ``XceptionEncoder(spec, num_modalities=1)``, i.e. fusionlab's names with a modality's ``.bns.0`` left out
(``conv1.weight``, ``entry.0.conv2.depthwise.weight``, ``middle.15.bn2.running_var``, ``exit.1.conv3.pointwise.weight``;
``fusionlab models --backbone xception65 --weight-keys`` lists them with their shapes), which a converter from
another Xception port writes by renaming keys; for a Mix Transformer SegFormer's ImageNet file (``head.*`` dropped,
every LayerNorm into each modality's copy; ``--backbone mit_b1 --weight-keys``). Every modality's BN copy receives
the same gamma/beta/statistics; ``fc.*`` is dropped; an early-concat stem (``M * 3`` input channels) gets the RGB
filters tiled M times and divided by M, so a constant input gives the same response. Nothing is downloaded: the
weights come from a local file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from fusionlab.torch_files import TorchFileError, load_weights_only

from .backbone_registry import backbone_entry, family_of_encoder
from .pretrained_errors import PretrainedReleaseError, PretrainedWeightsError, preview
from .pretrained_release import ANY, check_pretrained_release, identify_pretrained

if TYPE_CHECKING:
    from .fusion import FusionModel

__all__ = ["PretrainedWeightsError", "checks_release", "encoder_state_from_torchvision", "imagenet_weight_keys",
           "load_imagenet_weights", "read_state_dict", "single_modality_keys"]

_MODALITY_COPY = re.compile(r"\.bns\.\d+\.")
_OPTIONAL_SUFFIX = "num_batches_tracked"  # absent from the older torchvision checkpoints the references use


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        what = "is a directory, not a weights file" if os.path.isdir(path) else "not found"
        raise PretrainedWeightsError(f"pretrained weights file {what}: {path}")
    try:
        state = load_weights_only(path)
    except TorchFileError as error:
        raise PretrainedWeightsError(f"cannot read pretrained weights {path} (a state dict of tensors, read with "
                                     f"weights_only=True): {error.reason}") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"{path}: expected a state dict of tensors (a torchvision ResNet's, an "
                                     f"Xception's in fusionlab's names, or a SegFormer Mix Transformer's)")
    return {key.removeprefix("module."): value for key, value in state.items()}


def encoder_state_from_torchvision(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], origin: str = "state dict"
) -> dict[str, torch.Tensor]:
    """Map a single-modality state dict (a torchvision ResNet's, a fusionlab Xception's) onto an encoder's
    ``target`` state dict (keys and shapes)."""
    wanted: dict[str, list[str]] = {}
    for key in target:
        wanted.setdefault(_MODALITY_COPY.sub(".", key), []).append(key)
    missing = sorted(k for k in wanted if k not in source and not k.endswith(_OPTIONAL_SUFFIX))
    unexpected = sorted(k for k in source if k not in wanted and not k.startswith("fc."))
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing encoder keys [{preview(missing)}]")
        if unexpected:
            problems.append(f"unexpected keys [{preview(unexpected)}]")
        raise PretrainedWeightsError(f"{origin} does not match the encoder: " + "; ".join(problems))

    state = {}
    for source_key, keys in wanted.items():
        if source_key not in source:
            continue
        value = source[source_key]
        for key in keys:
            expected = target[key].shape
            if key == "conv1.weight" and value.dim() == 4 and value.shape[1] and expected[1] % value.shape[1] == 0:
                repeats = expected[1] // value.shape[1]
                value = value.repeat(1, repeats, 1, 1) / repeats
            if value.shape != expected:
                raise PretrainedWeightsError(
                    f"{origin}: {source_key} has shape {list(value.shape)}, the encoder's {key} needs {list(expected)}"
                )
            state[key] = value
    return state


def load_imagenet_weights(model: FusionModel, source: str | os.PathLike | Mapping[str, torch.Tensor],
                          version: str = "any", arch: str | None = None) -> None:
    """Copy ImageNet weights (module docstring: the format) into every encoder of ``model`` (strictly, in place;
    nothing is copied unless every encoder's weights map).

    For a ResNet or Xception a file is first identified by its sha256 and refused unless it is the ImageNet release
    ``version`` asks for (``any``: every file; ``arch``, the backbone, only narrows the files an error lists). The
    releases are torchvision's ResNet files, so a Mix Transformer's file skips that check whatever ``version`` says
    (the reference recipe's ``imagenet1k_v1`` included) and is only identified. What was found is kept as
    ``model.pretrained_file`` for the run's record."""
    encoders = [encoder for _, encoder in model.encoders()]
    if not encoders:
        raise PretrainedWeightsError(f"{type(model).__name__} has no encoder of a registered backbone family to "
                                     f"load weights into")
    families = [family_of_encoder(encoder) for encoder in encoders]
    missing = sorted({family.name for family in families if family.imagenet_state is None})
    if missing:
        raise PretrainedWeightsError(f"backbone family {', '.join(missing)} takes no ImageNet weights file")
    released = any(family.release_checked for family in families)  # the releases are torchvision's ResNet files
    if isinstance(source, Mapping):
        if released and version != ANY:
            raise PretrainedReleaseError(f"an in-memory state dict has no file to check against pretrained "
                                         f"version {version}; pass the file, or version 'any'")
        origin, weights, found = "state dict", dict(source), None
    else:
        found = check_pretrained_release(source, version, arch) if released else identify_pretrained(source)
        origin, weights = str(source), read_state_dict(source)
    loads = []
    for encoder, family in zip(encoders, families, strict=True):
        target = encoder.state_dict()
        mapped = family.imagenet_state(weights, target, origin)
        # the target's own: a CNN's optional counters, what is not the MiT itself (TokenFusion's score predictors)
        loads.append((encoder, {**target, **mapped}))
    for encoder, state in loads:
        encoder.load_state_dict(state, strict=True)
    if found is not None:
        model.pretrained_file = found


load_imagenet_resnet = load_imagenet_weights  # the name before Mix Transformers loaded too


def checks_release(backbone: str) -> bool:
    """Whether ``load_imagenet_weights`` checks a ``backbone``'s file against ``model.pretrained_version``: the
    releases are torchvision's ResNet files (its family's ``release_checked``), so a Mix Transformer's is only
    identified (and a translation backbone loads none); the driver checks the file the same way before any worker
    starts."""
    try:
        return backbone_entry(backbone).family.release_checked
    except ValueError:  # no segmentation backbone
        return False


def imagenet_weight_keys(backbone: str) -> dict[str, tuple[int, ...]]:
    """The keys, with their shapes, a ``backbone``'s ImageNet file holds (one modality; the classifier, ``fc.*`` or
    a MiT's ``head.*``, may be there too)."""
    entry = backbone_entry(backbone)
    if entry.family.weight_keys is None:
        raise PretrainedWeightsError(f"backbone {backbone!r} (family {entry.family.name}) takes no ImageNet file")
    return entry.family.weight_keys(entry.spec)


def single_modality_keys(encoder: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """A one-modality encoder's state dict keys, with their shapes, a modality's ``.bns.0`` left out: the file's
    keys of a CNN family (torchvision's names for a ResNet, fusionlab's for an Xception)."""
    return {_MODALITY_COPY.sub(".", key): tuple(value.shape) for key, value in encoder.state_dict().items()}
