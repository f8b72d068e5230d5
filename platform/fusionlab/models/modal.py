"""The two building blocks every fusion model shares.

Modalities travel stacked along the batch axis: a tensor ``[M*B, C, H, W]`` whose rows ``m*B:(m+1)*B`` belong to
modality ``m``. A shared convolution then runs once for all modalities, and only the norm (BatchNorm, or InstanceNorm
in the translation generator) is per modality.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def split_modalities(x: torch.Tensor, num_modalities: int) -> torch.Tensor:
    """View ``[M*B, ...]`` as ``[M, B, ...]`` (no copy)."""
    return x.unflatten(0, (num_modalities, -1))


def mean_of_others(v: torch.Tensor) -> torch.Tensor:
    """For ``v`` of shape ``[M, ...]``, entry m of the result is the mean of ``v[m']`` over ``m' != m``.

    For M = 2 this is the other modality itself, copied exactly (no rounding through a sum).
    """
    num_modalities = v.shape[0]
    if num_modalities < 2:
        raise ValueError(f"mean_of_others needs at least 2 modalities, got {num_modalities}")
    if num_modalities == 2:
        return v.flip(0)
    return (v.sum(0, keepdim=True) - v) / (num_modalities - 1)


class SharedByModalities:
    """Mixin for a layer whose weights all modalities share: it runs once on the stacked batch.

    ``loop_modalities`` switches to one call per modality (the reference implementations' execution) so benchmarks
    can compare both on the same weights.
    """

    def __init__(self, *args, num_modalities: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_modalities = num_modalities
        self.loop_modalities = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.loop_modalities and self.num_modalities > 1):
            return super().forward(x)
        parts = []
        for part in x.chunk(self.num_modalities):
            parts.append(super().forward(part))
        return torch.cat(parts)


class SharedConv2d(SharedByModalities, nn.Conv2d):
    """A convolution whose weights all modalities share (see ``SharedByModalities``)."""


class SharedConvTranspose2d(SharedByModalities, nn.ConvTranspose2d):
    """A transposed convolution whose weights all modalities share (see ``SharedByModalities``)."""


def set_modality_loop(model: nn.Module, enabled: bool) -> None:
    """Run every shared conv of ``model`` batched (default) or as a per-modality loop."""
    for module in model.modules():
        if isinstance(module, SharedByModalities):
            module.loop_modalities = enabled


def set_batchnorm_implementation(model: nn.Module, implementation: str) -> None:
    """Run every ``ModalBatchNorm2d`` of ``model`` as ``"cat"`` (default) or ``"sliced"`` (see the class)."""
    if implementation not in ModalBatchNorm2d.implementations:
        raise ValueError(f"implementation must be one of {ModalBatchNorm2d.implementations}, not {implementation!r}")
    for module in model.modules():
        if isinstance(module, ModalBatchNorm2d):
            module.implementation = implementation


class _SlicedBatchNorm(torch.autograd.Function):
    """Batch norm of each modality's slice of the stacked batch, written into one output (no ``torch.cat``).

    Each slice runs ``aten::native_batch_norm`` (the kernel ``F.batch_norm`` dispatches to on CPU) with ``out=`` a
    slice of a single preallocated output, and the backward runs ``native_batch_norm_backward`` with ``out=`` slices
    of a single input gradient: the same arithmetic as the per-slice modules, so results are bit-identical to
    chunk + BN + cat, and the same tensors are saved (the input and per-channel mean / inverse std). Once
    differentiable (no double backward); the running statistics are updated in place by the kernel.
    """

    @staticmethod
    def forward(ctx, x, slices, eps, *params):
        count = len(slices)
        weights, biases = params[:count], params[count:]
        out = torch.empty_like(x)
        saved = []
        for (training, momentum, running_mean, running_var), weight, bias, part, out_part in zip(
                slices, weights, biases, x.chunk(count), out.chunk(count), strict=True):
            mean, invstd = x.new_empty(0), x.new_empty(0)
            torch.ops.aten.native_batch_norm.out(part, weight, bias, running_mean, running_var, training, momentum, eps,
                                                 out=out_part, save_mean=mean, save_invstd=invstd)
            # eval normalises with the running statistics: the backward reads them (saved, so a later in-place
            # update of them before backward is an autograd error rather than a silent mismatch)
            saved += [mean, invstd] if training else [running_mean, running_var]
        ctx.trainings = [training for training, *_ in slices]
        ctx.eps = eps
        ctx.save_for_backward(x, *weights, *saved)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, *rest = ctx.saved_tensors
        count = len(ctx.trainings)
        weights, saved = rest[:count], rest[count:]
        needs_input, needs_params = ctx.needs_input_grad[0], any(ctx.needs_input_grad[3:])
        grad_in = torch.empty_like(x) if needs_input else None
        grad_in_parts = grad_in.chunk(count) if needs_input else [None] * count
        grad_weights, grad_biases = [], []
        for m, (training, weight, part, grad_part) in enumerate(
                zip(ctx.trainings, weights, x.chunk(count), grad_out.chunk(count), strict=True)):
            first, second = saved[2 * m], saved[2 * m + 1]
            stats = (None, None, first, second) if training else (first, second, None, None)
            mask = [needs_input, needs_params, needs_params]
            if all(mask):
                grad_weight, grad_bias = weight.new_empty(0), weight.new_empty(0)
                torch.ops.aten.native_batch_norm_backward.out(grad_part, part, weight, *stats, training, ctx.eps, mask,
                                                              out0=grad_in_parts[m], out1=grad_weight, out2=grad_bias)
            else:  # out= cannot leave an output undefined: the allocating op, then a copy (frozen BN or input)
                grad_part_in, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
                    grad_part, part, weight, *stats, training, ctx.eps, mask)
                if needs_input:
                    grad_in_parts[m].copy_(grad_part_in)
            grad_weights.append(grad_weight if needs_params else None)
            grad_biases.append(grad_bias if needs_params else None)
        return (grad_in, None, None, *grad_weights, *grad_biases)


class ModalBatchNorm2d(nn.Module):
    """One BatchNorm2d per modality, each applied to its own slice of the stacked batch.

    ``shared=True`` keeps a single BN used by every modality (the papers' shared-BN ablation); statistics are
    still computed per modality slice, as in the reference code.

    Two executions, bit-identical results (``implementation``, per module, or ``set_batchnorm_implementation``):

    * ``"cat"`` (default): chunk, one ``nn.BatchNorm2d`` call per slice, ``torch.cat`` (the original execution).
    * ``"sliced"`` (opt-in): each slice's ``native_batch_norm`` writes straight into its rows of one output, and the
      backward into its rows of one input gradient (``_SlicedBatchNorm``): same kernel per slice, so the same
      outputs, gradients and running statistics (``num_batches_tracked`` and ``momentum=None`` included), the same
      saved tensors, and neither the forward's ``torch.cat`` copy nor the backward's (chunk's backward concatenates
      the slices' input gradients). It applies on the CPU to float32 / float64 only and falls back to ``"cat"``
      elsewhere: under ``torch.compile`` (Inductor writes per-slice results into the concatenated buffer itself),
      under autocast / reduced precision (the saved statistics' dtype depends on the backend), and on GPUs, where it
      has not been measured or tested yet.

    Why ``"cat"`` stays the default (issue 35, measured on the 2-core development CPU, torch 2.13, shared with other
    jobs; ``bench/step_throughput.py --compare-batchnorm``, rounds alternating in one process, see
    ``bench/RESULTS.md``): the copy costs nothing measurable in a training step. CEN ResNet-mini, batch 4,
    2x3x128x128, 5 rounds x 2 steps: median 224.0 ms/step sliced vs 197.1 ms cat; cat / sliced per round 0.92, 1.02,
    0.88 in the three undisturbed rounds (0.19 and 0.07 in two rounds hit by other jobs), i.e. no gain, within
    noise; logits and loss identical (max difference 0). Where the copy could matter is peak
    memory on a GPU (one activation-sized transient per BN in forward and backward): measure there before switching.
    The element-wise formulation (``var_mean`` over the ``[M, B, C, H*W]`` view, then
    ``(x - mean) * (invstd * gamma) + beta``) was rejected: in a layer micro-benchmark ([4, 256, 32, 32] per
    modality, M = 2) its forward + backward was slower than chunk + cat and its process peaked ~60 MiB higher
    (autograd saves ``x - mean`` as well as the input), and it is not bit-identical (up to 7e-4 in a bias gradient).
    """

    implementations = ("sliced", "cat")

    def __init__(self, num_features: int, num_modalities: int, shared: bool = False):
        super().__init__()
        self.num_modalities = num_modalities
        self.shared = shared
        self.implementation = "cat"
        copies = 1 if shared else num_modalities
        self.bns = nn.ModuleList(nn.BatchNorm2d(num_features) for _ in range(copies))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_modalities == 1:
            return self.bns[0](x)
        if self.implementation not in self.implementations:
            raise ValueError(f"implementation must be one of {self.implementations}, not {self.implementation!r}")
        if self.implementation == "cat" or not self._sliced_applies(x):
            parts = x.chunk(self.num_modalities)
            return torch.cat([self.bns[0 if self.shared else m](part) for m, part in enumerate(parts)])
        norms = [self.bns[0 if self.shared else m] for m in range(self.num_modalities)]
        slices = tuple(self._slice_arguments(bn) for bn in norms)
        params = [bn.weight for bn in norms] + [bn.bias for bn in norms]
        return _SlicedBatchNorm.apply(x, slices, norms[0].eps, *params)

    def _sliced_applies(self, x: torch.Tensor) -> bool:
        bn = self.bns[0]
        return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and bn.affine
                and bn.weight.dtype == x.dtype and x.shape[0] % self.num_modalities == 0
                and not torch.compiler.is_compiling())

    @staticmethod
    def _slice_arguments(bn: nn.BatchNorm2d) -> tuple[bool, float, torch.Tensor | None, torch.Tensor | None]:
        """What ``nn.BatchNorm2d.forward`` passes to ``F.batch_norm`` (its bookkeeping included), one call's worth."""
        factor = 0.0 if bn.momentum is None else bn.momentum
        if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
            factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        training = bn.training or (bn.running_mean is None and bn.running_var is None)
        use_running = not bn.training or bn.track_running_stats
        return (training, factor, bn.running_mean if use_running else None, bn.running_var if use_running else None)

    def gammas(self) -> torch.Tensor:
        """The scaling factors, ``[M, C]`` (one row per modality)."""
        weights = [bn.weight for bn in self.bns]
        if self.shared:
            weights = weights * self.num_modalities
        return torch.stack(weights)

    def modal_weights(self) -> list[nn.Parameter]:
        """The per-modality scaling-factor parameters, modality order (one when shared)."""
        return [bn.weight for bn in self.bns]


class ModalInstanceNorm2d(nn.Module):
    """One affine ``InstanceNorm2d`` per modality, each applied to its own slice of the stacked batch.

    Instance statistics are per sample, so the normalisation runs once on the whole stack and only the affine step is
    per modality (``[M, 1, C, 1, 1]`` broadcast): the same result as M calls, in one kernel. No running statistics:
    eval normalises with the instance's own statistics, as pix2pix does at test time.
    """

    def __init__(self, num_features: int, num_modalities: int, eps: float = 1e-5):
        super().__init__()
        self.num_modalities = num_modalities
        self.norms = nn.ModuleList(nn.InstanceNorm2d(num_features, eps=eps, affine=True) for _ in range(num_modalities))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_modalities == 1:
            return self.norms[0](x)
        channels = x.shape[1]
        normalised = split_modalities(F.instance_norm(x, eps=self.norms[0].eps), self.num_modalities)
        shape = (self.num_modalities, 1, channels, 1, 1)
        return (normalised * self.gammas().view(shape) + self.betas().view(shape)).flatten(0, 1)

    def gammas(self) -> torch.Tensor:
        """The scaling factors, ``[M, C]`` (one row per modality)."""
        return torch.stack([norm.weight for norm in self.norms])

    def betas(self) -> torch.Tensor:
        return torch.stack([norm.bias for norm in self.norms])

    def modal_weights(self) -> list[nn.Parameter]:
        """The per-modality scaling-factor parameters, modality order (what the L1 sparsity acts on)."""
        return [norm.weight for norm in self.norms]
