"""The GPU path of the training loops: memory format, fused optimisers, cuDNN autotuning, ``torch.compile``, and
per-epoch loss totals kept on the device (no host synchronisation inside a step).

Every switch is in ``TrainConfig``; their defaults ("auto", or off) leave a CPU run exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from fusionlab.config import TrainConfig
from fusionlab.errors import TrainingDiverged


def wants(setting: bool | str, device: torch.device) -> bool:
    """An ``auto | true | false`` switch: auto is on for CUDA only."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


def channels_last(config: TrainConfig, device: torch.device) -> bool:
    return wants(config.channels_last, device)


def to_device(model: nn.Module, config: TrainConfig, device: torch.device) -> nn.Module:
    """The model on ``device``, in channels-last memory format when asked. Parameters keep their identity, so an
    optimiser built before or after sees the same tensors."""
    if channels_last(config, device):
        return model.to(device, memory_format=torch.channels_last)
    return model.to(device)


def batch_to_device(images: torch.Tensor, config: TrainConfig, device: torch.device) -> torch.Tensor:
    """Modality-stacked images ``[M, B, C, H, W]`` on ``device``; with channels-last, every ``[C, H, W]`` image is
    stored HWC so that the model's ``flatten(0, 1)`` gives a channels-last ``[M*B, C, H, W]`` without a copy."""
    images = images.to(device, non_blocking=True)
    if not channels_last(config, device):
        return images
    return images.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, images.shape[:2])


def image_to_device(image: torch.Tensor, config: TrainConfig, device: torch.device) -> torch.Tensor:
    """A plain ``[B, C, H, W]`` batch on ``device``, channels-last when asked."""
    image = image.to(device, non_blocking=True)
    return image.contiguous(memory_format=torch.channels_last) if channels_last(config, device) else image


def use_fused(config: TrainConfig, parameters: Iterable[torch.Tensor]) -> bool:
    """Fused Adam/SGD: auto when every parameter is a floating CUDA tensor (the fused kernels' requirement)."""
    if config.fused == "auto":
        parameters = list(parameters)
        return bool(parameters) and all(p.is_cuda and p.is_floating_point() for p in parameters)
    return bool(config.fused)


def configure_backends(config: TrainConfig, device: torch.device) -> None:
    if device.type == "cuda" and config.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True  # crops keep one input shape per run: autotune once per shape


def maybe_compile(model: nn.Module, config: TrainConfig) -> nn.Module:
    """``torch.compile`` the prepared model (after DDP wrapping: TorchDynamo's DDPOptimizer splits the graph at the
    gradient buckets). The wrapper is ``OptimizedModule``; ``steps.unwrap`` strips it, so checkpoints save the
    uncompiled module's ``state_dict`` with unchanged keys."""
    return torch.compile(model, backend=config.compile_backend) if config.compile else model


class EpochTotals:
    """Sums of per-step scalars and a count of non-finite losses, accumulated on the device in float64.

    ``add`` launches only device work; ``finish`` sums over workers and is the one host synchronisation of the
    epoch, raising ``TrainingDiverged`` (naming the epoch) if any step's loss was not finite on any worker; or, where
    such steps had a batch with no labelled pixel (``add``'s ``unlabelled``), the error ``unlabelled_error`` makes.
    """

    def __init__(self, names: list[str], device: torch.device):
        self.names = names
        # ..., steps, non-finite steps, steps without a labelled pixel
        self.sums = torch.zeros(len(names) + 3, dtype=torch.float64, device=device)
        self.one = torch.ones((), dtype=torch.float64, device=device)
        self.zero = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, loss: torch.Tensor, *others: torch.Tensor, unlabelled: torch.Tensor | None = None) -> None:
        """``loss`` is checked for finiteness; it and ``others`` are summed (one value per name); ``unlabelled``
        (1.0 or 0.0 on the device) counts a batch with no labelled pixel (``train/unlabelled.py``)."""
        loss = loss.detach().double()
        values = [loss, *(value.detach().double() for value in others)]
        bad = (~torch.isfinite(loss)).double()
        self.sums += torch.stack([*values, self.one, bad, self.zero if unlabelled is None else unlabelled.double()])

    def finish(self, all_reduce_sum, epoch: int, what: str = "training loss",
               hint: str = "lower train.lr_encoder / train.lr_decoder (or use train.optimizer=adam)",
               unlabelled_error: Callable[[int, int], Exception] | None = None) -> dict[str, float]:
        """Every name's mean over all steps of all workers (NaN when there were none). A non-finite loss where some
        batch had no labelled pixel raises ``unlabelled_error(those steps, steps)``: the data's fault, not the
        learning rate's."""
        totals = all_reduce_sum(self.sums).tolist()
        *sums, steps, bad, without_labels = totals
        if bad > 0 and without_labels > 0 and unlabelled_error is not None:
            raise unlabelled_error(int(without_labels), int(steps))
        if bad > 0:
            raise TrainingDiverged(f"{what} was not finite (NaN or inf) in {int(bad)} of {int(steps)} steps at "
                                     f"epoch {epoch}: the run diverged; {hint}")
        return {name: (value / steps if steps > 0 else float("nan")) for name, value in zip(self.names, sums,
                                                                                             strict=True)}
