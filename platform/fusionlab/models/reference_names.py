"""The CEN / AsymFusion reference code's state-dict names (yikaiw/CEN, yikaiw/AsymFusion ``RefineNet``) and the
fusionlab ``cen`` / ``asymfusion`` names they correspond to, one to one.

The references wrap every conv in ``ModuleParallel`` (``conv1.module.weight``) and keep one BN per modality as
``bn_<m>`` (``layer1.0.bn2.bn_1.weight``); their decoder is named after Light-Weight RefineNet's layers
(``adapt_stage2_b.0.1_conv``, ``mflow_conv_g1_pool.0.3_outvar_dimred``, ...) and counts stages and units from 1,
where fusionlab counts from 0 (``decoder.stages.1.adapt.blocks.0.1``). The parity test and ``fusionlab
import-checkpoint`` both go through ``map_reference_state``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from fusionlab.errors import FusionlabError

# (reference template, fusionlab template). {s} and {k} count from 1 in the reference and from 0 in fusionlab.
NAME_PAIRS: tuple[tuple[str, str], ...] = (
    ("alpha", "alpha"),
    ("conv1.module.weight", "encoder.conv1.weight"),
    ("bn1.bn_{m}.{p}", "encoder.bn1.bns.{m}.{p}"),
    ("{block}.{conv}.module.weight", "encoder.{block}.{conv}.weight"),
    ("{block}.{norm}.bn_{m}.{p}", "encoder.{block}.{norm}.bns.{m}.{p}"),
    ("p_ims1d2_outl{s}_dimred.module.weight", "decoder.stages.{s}.dimred.weight"),
    ("adapt_stage{s}_b.0.{k}_conv.module.{w}", "decoder.stages.{s}.adapt.blocks.{k}.1.{w}"),
    ("adapt_stage{s}_b.0.{k}_conv_relu_varout_dimred.module.{w}", "decoder.stages.{s}.adapt.blocks.{k}.3.{w}"),
    ("adapt_stage{s}_b2_joint_varout_dimred.module.weight", "decoder.stages.{s}.joint.weight"),
    ("mflow_conv_g{s}_pool.0.{k}_outvar_dimred.module.weight", "decoder.stages.{s}.pool.convs.{k}.weight"),
    ("mflow_conv_g{s}_b.0.{k}_conv.module.{w}", "decoder.stages.{s}.refine.blocks.{k}.1.{w}"),
    ("mflow_conv_g{s}_b.0.{k}_conv_relu_varout_dimred.module.{w}", "decoder.stages.{s}.refine.blocks.{k}.3.{w}"),
    ("mflow_conv_g{s}_b3_joint_varout_dimred.module.weight", "decoder.stages.{s}.project.weight"),
    ("clf_conv.module.{w}", "decoder.classifier.{w}"),
)
FIELDS = {
    "m": r"\d+",
    "p": r"weight|bias|running_mean|running_var|num_batches_tracked",
    "w": r"weight|bias",
    "block": r"layer[1-4]\.\d+",
    "conv": r"conv[1-3]|downsample\.0",
    "norm": r"bn[1-3]|downsample\.1",
    "s": r"\d+",
    "k": r"\d+",
}
ONE_BASED = ("s", "k")  # in the reference's names
OPTIONAL_SUFFIX = "num_batches_tracked"  # BN counters: not read in eval, absent from some saved state dicts
_FIELD = re.compile(r"\{(\w+)\}")


def _compile(template: str) -> re.Pattern[str]:
    parts, last = [], 0
    for match in _FIELD.finditer(template):
        parts.append(re.escape(template[last:match.start()]))
        parts.append(f"(?P<{match.group(1)}>{FIELDS[match.group(1)]})")
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts))


_PATTERNS = [(_compile(ref), ref, _compile(ours), ours) for ref, ours in NAME_PAIRS]


def _renumber(fields: dict[str, str], shift: int) -> dict[str, str] | None:
    values = dict(fields)
    for name in ONE_BASED:
        if name in values:
            values[name] = str(int(values[name]) + shift)
            if int(values[name]) < 0:
                return None
    return values


def fusionlab_name(reference: str) -> str | None:
    """The fusionlab name of a reference state-dict name (``module.`` already removed), or None if it has none."""
    for ref_pattern, _, _, ours in _PATTERNS:
        match = ref_pattern.fullmatch(reference)
        if match:
            fields = _renumber(match.groupdict(), -1)
            return None if fields is None else ours.format(**fields)
    return None


def reference_name(fusionlab: str) -> str | None:
    """The reference's name for a fusionlab state-dict name, or None if it has none."""
    for _, ref, our_pattern, _ in _PATTERNS:
        match = our_pattern.fullmatch(fusionlab)
        if match:
            fields = _renumber(match.groupdict(), +1)
            return None if fields is None else ref.format(**fields)
    return None


class ReferenceStateError(FusionlabError):
    """A reference state dict that does not map one to one onto the model; the message lists every bad key."""


def _listing(items: list[str], limit: int = 12) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; ... ({len(items) - limit} more)" if len(items) > limit else "")


def _shape(tensor: torch.Tensor) -> list[int]:
    return list(tensor.shape)


def map_reference_state(reference: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                        origin: str = "reference state dict") -> dict[str, torch.Tensor]:
    """``reference`` (reference names) renamed onto ``target`` (a fusionlab model's state dict): every key of each
    side must have exactly one counterpart of the same shape, else ``ReferenceStateError`` names them all. BN counters
    (``num_batches_tracked``) the reference lacks keep the target's value. Returns a complete state dict for
    ``load_state_dict(strict=True)``."""
    state: dict[str, torch.Tensor] = {}
    source_of: dict[str, str] = {}
    unexpected, misshaped, duplicated = [], [], []
    for key, value in reference.items():
        ours = fusionlab_name(key)
        if ours is None or ours not in target:
            counterpart = "no fusionlab counterpart" if ours is None else f"would be {ours}, which the model lacks"
            unexpected.append(f"{key} {_shape(value)} ({counterpart})")
        elif ours in source_of:
            duplicated.append(f"{key} and {source_of[ours]} both map to {ours}")
        elif value.shape != target[ours].shape:
            misshaped.append(f"{key} is {_shape(value)}, the model's {ours} is {_shape(target[ours])}")
        else:
            state[ours] = value
            source_of[ours] = key
    claimed = {fusionlab_name(key) for key in reference}
    missing = [f"{reference_name(key) or '?'} {_shape(value)} (the model's {key})" for key, value in target.items()
               if key not in claimed and not key.endswith(OPTIONAL_SUFFIX)]
    problems = [(f"{len(found)} {what}", found) for what, found in (
        ("missing key(s)", missing), ("unexpected key(s)", unexpected), ("mis-shaped tensor(s)", misshaped),
        ("duplicate(s)", duplicated)) if found]
    if problems:
        raise ReferenceStateError(f"{origin} does not match the model: " + " | ".join(
            f"{title}: {_listing(found)}" for title, found in problems))
    for key, value in target.items():
        state.setdefault(key, value)  # only the optional counters are left
    return state
