"""FLOPs of a training step and model FLOPs utilisation, counted in one place (the grid estimate, the benchmarks).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``, never typed in: convolutions and matmuls only
(element-wise ops, normalisation and the optimiser's update are not counted). MFU is achieved FLOP/s over the
device's peak FLOP/s in the training precision.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

# bf16 dense Tensor Core peak, TFLOP/s, by a substring of torch.cuda.get_device_name(), first match wins. Sources:
# NVIDIA H100 Tensor Core GPU datasheet (SXM 1,979 / PCIe 1,513 TFLOPS "with sparsity", halved for dense), NVIDIA
# H200 datasheet (1,979 with sparsity), NVIDIA A100 datasheet (312 dense). SXM H100s report "H100 80GB HBM3".
PEAK_BF16_TFLOPS: list[tuple[tuple[str, ...], float]] = [
    (("H100", "PCIe"), 756.0),
    (("H100", "HBM3"), 989.4),
    (("H100", "SXM"), 989.4),
    (("H200",), 989.4),
    (("A100",), 312.0),
]


def peak_tflops(device_name: str) -> float | None:
    """The bf16 dense peak of a device named like ``torch.cuda.get_device_name()``; None for one not in the table."""
    for needles, peak in PEAK_BF16_TFLOPS:
        if all(needle.lower() in device_name.lower() for needle in needles):
            return peak
    return None


def count_flops(step: Callable[[], Any]) -> float:
    """FLOPs of one call of ``step`` (a whole training step: forward, loss, backward, optimiser)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def _proxy_loss(model: torch.nn.Module, output: Any) -> torch.Tensor:
    """A loss on every output of a fusion model (branches and ensemble) plus its regulariser: what backward
    needs to reach every weight; its value is irrelevant, the FLOPs are those of a real loss's backward."""
    loss = sum(branch.float().mean() for branch in output.branches) + output.ensemble.float().mean()
    return loss + model.regularization_loss()


def step_flops(model: torch.nn.Module, inputs: torch.Tensor,
               loss: Callable[[torch.nn.Module, Any], torch.Tensor] = _proxy_loss) -> float:
    """FLOPs of one training step of ``model`` on ``inputs``: forward, then backward from ``loss(model, output)``."""
    def step() -> None:
        loss(model, model(inputs)).backward()

    model.train()
    return count_flops(step)


def forward_flops(model: torch.nn.Module, inputs: torch.Tensor) -> float:
    """FLOPs of one forward pass of ``model`` (in eval mode: what inference costs) on ``inputs``."""
    model.eval()
    with torch.no_grad():
        return count_flops(lambda: model(inputs))


@contextlib.contextmanager
def shape_only_norms(note: Callable[[torch.Tensor], Any] | None = None) -> Iterator[None]:
    """Batch and instance norm as a copy of their input while a model is measured on the meta device; ``note`` is
    called with each norm's input (what a real norm keeps for backward: ``models/memory.py`` counts it).

    On meta their decompositions run in Python, two thirds of a ResNet step's counting time; they keep the shape
    and FlopCounterMode counts none of their ops, so every counted convolution and matmul sees the same shapes."""
    norms = {"batch_norm": F.batch_norm, "instance_norm": F.instance_norm}

    def copy(input: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if note is not None:
            note(input)
        return input.clone()

    for name in norms:
        setattr(F, name, copy)
    try:
        yield
    finally:
        for name, norm in norms.items():
            setattr(F, name, norm)


COUNTED_BATCH = 2


def _built_flops(name: str, backbone: Any, num_classes: int, modalities: tuple[str, ...], size: tuple[int, int],
                 kwargs: dict[str, Any], device: str, task: str, backward: bool) -> float:
    from .registry import build

    norms = shape_only_norms() if device == "meta" else contextlib.nullcontext()
    with torch.device(device), norms:
        model = build(name, backbone=backbone, num_classes=num_classes, modalities=list(modalities), task=task,
                      **kwargs)
        # Two samples, halved (FLOPs are linear in the batch): a BatchNorm of DeepLabv3+'s 1x1 image pooling refuses
        # to train on one.
        inputs = torch.randn(len(modalities), COUNTED_BATCH, model.in_channels, *size)
        flops = step_flops(model, inputs) if backward else forward_flops(model, inputs)
        return flops / COUNTED_BATCH


def _sample_flops(name: str, backbone: Any, num_classes: int, modalities: tuple[str, ...], size: tuple[int, int],
                  kwargs: dict[str, Any], task: str, backward: bool) -> float:
    """Per sample, on the meta device (nothing allocated); if an op has no meta kernel, a real batch at a small size on
    the CPU, scaled by pixels."""
    try:
        return _built_flops(name, backbone, num_classes, modalities, size, kwargs, "meta", task, backward)
    except Exception:  # noqa: BLE001 - an op without a meta kernel: count a real small batch and scale by pixels
        height, width = size
        scale = min(1.0, 128 / max(height, width))
        small = (max(32, round(height * scale / 32) * 32), max(32, round(width * scale / 32) * 32))
        flops = _built_flops(name, backbone, num_classes, modalities, small, kwargs, "cpu", task, backward)
        return flops * (height * width) / (small[0] * small[1])


@functools.lru_cache(maxsize=256)
def _cached_sample_flops(name: str, backbone: Any, num_classes: int, modalities: tuple[str, ...],
                         size: tuple[int, int], kwargs_json: str, task: str, backward: bool) -> float:
    """``_sample_flops`` once per model, size and pass (the kwargs as JSON, so that the arguments are hashable)."""
    return _sample_flops(name, backbone, num_classes, modalities, size, json.loads(kwargs_json), task, backward)


def sample_step_flops(name: str, backbone: str, num_classes: int, modalities: tuple[str, ...],
                      size: tuple[int, int], kwargs_json: str = "{}", task: str = "segmentation") -> float:
    """FLOPs of one training step (forward + backward) per sample at ``size`` of the registered model ``name``
    built with the JSON ``kwargs_json``.

    Translation: the generator's step only (the PatchGAN discriminator's is not counted)."""
    return _cached_sample_flops(name, backbone, num_classes, modalities, size, kwargs_json, task, True)


def model_sample_flops(model: torch.nn.Module, size: tuple[int, int]) -> float | None:
    """Forward FLOPs of one sample at ``size`` (H, W) of a model ``models.build`` made, counted on a copy it builds
    again from the model's ``build_args`` (the model itself is not run); None for a model built otherwise."""
    args = getattr(model, "build_args", None)
    if args is None:
        return None
    return _cached_sample_flops(args.name, args.backbone, args.num_classes, args.modalities, tuple(size),
                                json.dumps({"width": args.width, **args.params}, sort_keys=True), args.task, False)


def mfu(flops: float, seconds: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: ``flops`` done in ``seconds`` as a fraction of a ``peak_tflops`` device."""
    return flops / seconds / 1e12 / peak_tflops


def device_hours(flops: float, peak_tflops: float, utilisation: float) -> float:
    """Hours one ``peak_tflops`` device takes for ``flops`` at MFU ``utilisation`` (``mfu`` the other way round)."""
    return flops / (peak_tflops * 1e12 * utilisation) / 3600
