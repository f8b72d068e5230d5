"""Image-to-image translation (Taskonomy domains -> RGB): the pix2pix objective for every branch and the ensemble,
and FID / KID of the generated images.

Generator loss: ``gan_weight * sum_j BCE(D(pair_j), real) + l1_weight * sum_o |o - y|_1`` plus the model's own
regularisation (CEN's ``lambda * sum |gamma|``) once; the L1 sum runs over every output o (each branch and the
alpha-ensemble of detached branches, whose L1 trains alpha alone). What the PatchGAN D judges
(``train.gan.discriminators``):
- ``shared``: all the inputs beside each output, the ensemble included; D learns the real pair against every output
  (``0.5 * (BCE(real) + mean_o BCE(fake_o))``);
- ``per_branch`` (the CEN translation reference, ``main.py``): each branch's own input beside that branch's output,
  the ensemble not judged; D's loss is ``sum_m 0.5 * (BCE(D(x_m, y), real) + BCE(D(x_m, o_m), fake))``.
Images are compared in the generator's tanh range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusionlab.config import Config, FidConfig
from fusionlab.data import Manifest
from fusionlab.data.manifest import ModalitySpec
from fusionlab.fid import frechet_distance, kernel_inception_distance
from fusionlab.models.discriminator import branch_pairs, conditional_input

from .context import Batch, WorkerContext
from .device import EpochTotals, batch_to_device, image_to_device
from .optim import before_step
from .steps import freeze_batchnorm, metric_safe, scoring_model, unwrap

Gather = Callable[[torch.Tensor], torch.Tensor]


def to_tanh_range(image: torch.Tensor, spec: ModalitySpec) -> torch.Tensor:
    """A normalised image tensor (``[..., C, H, W]``, as the dataset serves it) back to ``value * scale`` in [0, 1],
    then to the generator's [-1, 1]."""
    return to_unit_range(image, spec) * 2 - 1


def to_unit_range(image: torch.Tensor, spec: ModalitySpec) -> torch.Tensor:
    mean = torch.tensor(spec.mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    std = torch.tensor(spec.std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    return image * std + mean


def generated(output) -> torch.Tensor:
    """Every output the objective scores: the branches, then the ensemble: ``[K, B, C, H, W]``."""
    return torch.cat([output.branches, output.ensemble.unsqueeze(0)])


def judged(inputs: torch.Tensor, images: torch.Tensor, config: Config, device: torch.device) -> torch.Tensor:
    """The shared discriminator's input: each image beside its sample's inputs ``[M, B, 3, H, W]``; ``images`` holds
    K images per sample, output-major (``[K*B, C, H, W]``: image ``k*B + b`` belongs to sample b)."""
    beside = inputs.repeat(1, images.shape[0] // inputs.shape[1], 1, 1, 1)
    return image_to_device(conditional_input(beside, images), config.train, device)


def per_branch(config: Config) -> bool:
    return config.train.gan.discriminators == "per_branch"


def judged_pairs(core: nn.Module, inputs: torch.Tensor, images: torch.Tensor, config: Config,
                 device: torch.device) -> torch.Tensor:
    """What D judges for ``images`` ``[J, B, C, H, W]`` (J judged outputs, or 1 for the real target): per branch,
    branch j's input beside image j (the real target beside every branch's input); shared, all inputs beside each."""
    if per_branch(config):
        branch_inputs = core.branch_inputs(inputs)
        if images.shape[0] == 1:
            images = images.expand(branch_inputs.shape[0], *images.shape[1:])
        return image_to_device(branch_pairs(branch_inputs, images), config.train, device)
    return judged(inputs, images.flatten(0, 1), config, device)


def judged_outputs(outputs: torch.Tensor, config: Config) -> torch.Tensor:
    """The outputs D judges: the branches (per branch: the reference leaves the ensemble out) or all of them."""
    return outputs[:-1] if per_branch(config) else outputs


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, config: Config) -> torch.Tensor:
    """``[J_real, B, ...]`` and ``[J, B, ...]`` patch logits -> D's loss (see the module docstring)."""
    if per_branch(config):
        return sum(0.5 * (adversarial_loss(real, True) + adversarial_loss(fake, False))
                   for real, fake in zip(real_logits, fake_logits, strict=True))
    return 0.5 * (adversarial_loss(real_logits, True) + adversarial_loss(fake_logits, False))


def generator_losses(fake_logits: torch.Tensor, outputs: torch.Tensor, real: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per judged output, BCE against "real" ``[J]``; per output, L1 to the target ``[K]``."""
    gan_losses = torch.stack([adversarial_loss(logits, True) for logits in fake_logits])
    l1_losses = (outputs.float() - real.unsqueeze(0)).abs().mean(dim=(1, 2, 3, 4))
    return gan_losses, l1_losses


def adversarial_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def train_epoch(generator: nn.Module, discriminator: nn.Module, batches: Iterable[Batch],
                optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer], config: Config, ctx: WorkerContext,
                target_spec: ModalitySpec, epoch: int, autocast: Callable[[], Any],
                after_generator_step: Callable[[], None]) -> dict[str, float]:
    """One epoch of alternating discriminator / generator steps; the epoch's mean losses over all workers. No host
    synchronisation inside a step: a non-finite generator loss raises ``TrainingDiverged`` when the epoch ends."""
    generator.train()
    discriminator.train()
    if config.train.freeze_bn:
        freeze_batchnorm(generator)
    optimizer_g, optimizer_d = optimizers
    gan = config.train.gan
    totals = EpochTotals(["train/loss", "train/l1", "train/l1_branches", "train/gan", "train/discriminator"],
                         ctx.device)
    core = unwrap(generator)
    for batch in batches:
        inputs = batch_to_device(batch["image"].transpose(0, 1), config.train, ctx.device)  # [M, B, 3, H, W]
        real = to_tanh_range(batch["target"].to(ctx.device, non_blocking=True), target_spec)
        with autocast():
            outputs = generated(generator(inputs))
        batch_size = outputs.shape[1]
        fakes = judged_outputs(outputs, config)
        count = fakes.shape[0]

        # Discriminator: the real pair(s) against the judged outputs, detached; one forward for all of them.
        with autocast():
            real_pairs = judged_pairs(core, inputs, real.unsqueeze(0), config, ctx.device)
            logits = discriminator(torch.cat([real_pairs,
                                              judged_pairs(core, inputs, fakes.detach(), config, ctx.device)]))
        real_logits, fake_logits = logits.unflatten(0, (-1, batch_size)).split(
            [real_pairs.shape[0] // batch_size, count])
        d_loss = discriminator_loss(real_logits, fake_logits, config)
        optimizer_d.zero_grad(set_to_none=True)
        d_loss.backward()
        optimizer_d.step()

        # Generator: fool D with the judged outputs, and stay close to the target (L1) with every output.
        with autocast():
            fake_logits = discriminator(judged_pairs(core, inputs, fakes, config, ctx.device)).unflatten(
                0, (count, batch_size))
        gan_losses, l1_losses = generator_losses(fake_logits, outputs, real)
        loss = gan.gan_weight * gan_losses.sum() + gan.l1_weight * l1_losses.sum() + core.regularization_loss()
        optimizer_g.zero_grad(set_to_none=True)
        loss.backward()
        before_step(optimizer_g, config.train)
        optimizer_g.step()
        after_generator_step()
        totals.add(loss, l1_losses[-1], l1_losses[:-1].double().mean(), gan_losses.double().mean(), d_loss)
    return totals.finish(ctx.all_reduce_sum, epoch, what="generator loss",
                         hint="lower train.lr_encoder / train.lr_decoder")


@torch.no_grad()
def evaluate_translation(generator: nn.Module, batches: Iterable[Batch], fid: FidConfig, device: torch.device,
                         manifest: Manifest, modalities: list[str], extractor, gather: Gather,
                         prefix: str = "val", keep_examples: int = 0, *, eval_dropout: bool = False,
                         size: tuple[int, int] | None = None
                         ) -> tuple[dict[str, float], list[dict[str, torch.Tensor]]]:
    """L1, FID and KID (x100) of every branch and of the ensemble (``<prefix>/fid``), over the whole split.

    Features are computed where the images are and gathered to every worker, so each worker returns the same figures;
    a worker's ``batches`` may be none (the forwards run on ``steps.scoring_model``). ``eval_dropout``: the
    generator's dropout stays on (the reference never calls ``eval()``); ``size``: inputs and target resized to
    (H, W) first (``data.eval_size``).
    """
    scoring_mode(generator, eval_dropout)
    core = scoring_model(generator)
    target_spec = manifest.modalities[manifest.target]
    names = [*core.branch_names(), None]
    fake_features: list[list[torch.Tensor]] = [[] for _ in names]
    real_features: list[torch.Tensor] = []
    l1_sums = torch.zeros(len(names), dtype=torch.float64)
    examples: list[dict[str, torch.Tensor]] = []
    for batch in batches:
        image, target = resized(batch["image"].to(device, non_blocking=True),
                                batch["target"].to(device, non_blocking=True), size)
        real = to_tanh_range(target, target_spec)
        outputs = generated(core(image.transpose(0, 1))).float().clamp(-1, 1)
        l1_sums += (outputs - real.unsqueeze(0)).abs().mean(dim=(2, 3, 4)).sum(dim=1).double().cpu()
        real_features.append(extractor.features((real + 1) / 2).double().cpu())
        for k in range(len(names)):
            fake_features[k].append(extractor.features((outputs[k] + 1) / 2).double().cpu())
        for i in range(min(keep_examples - len(examples), image.shape[0])):
            examples.append({
                "inputs": [to_unit_range(image[i, m, : manifest.modalities[name].channels],
                                         manifest.modalities[name]).clamp(0, 1).cpu()
                           for m, name in enumerate(modalities)],
                "outputs": ((outputs[:, i] + 1) / 2).cpu(),
                "target": ((real[i] + 1) / 2).cpu(),
            })
    real_all = gather(concatenated(real_features))
    count = real_all.shape[0]
    l1 = gather_sum(l1_sums, gather)
    metrics: dict[str, float] = {}
    for k, name in enumerate(names):
        fake_all = gather(concatenated(fake_features[k]))
        key = prefix if name is None else f"{prefix}/{metric_safe(name)}"
        metrics[f"{key}/l1"] = float(l1[k] / max(count, 1))
        if count >= 2:
            metrics[f"{key}/fid"] = frechet_distance(real_all, fake_all)
            kid, _ = kernel_inception_distance(real_all, fake_all, subsets=fid.kid_subsets,
                                               subset_size=min(fid.kid_subset_size, count))
            metrics[f"{key}/kid"] = 100.0 * kid
    return metrics, examples


def concatenated(features: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(features)``; a worker that scored nothing gives a 1-D empty tensor, which ``torch.cat`` (the
    gathers') passes over beside the other workers' ``[n, D]`` features."""
    return torch.cat(features) if features else torch.zeros(0, dtype=torch.float64)


def scoring_options(config: Config) -> dict[str, Any]:
    """``evaluate_translation``'s keywords from a config: dropout on or off, the image size scored."""
    size = config.data.eval_size
    return {"eval_dropout": config.train.gan.eval_dropout, "size": tuple(size) if size else None}


def scoring_mode(generator: nn.Module, eval_dropout: bool) -> None:
    """``eval()``, but with the dropout layers in train mode when ``eval_dropout`` (the translation models' norms
    keep no running statistics, so dropout is all that ``eval()`` changes in them)."""
    generator.eval()
    if eval_dropout:
        for module in generator.modules():
            if isinstance(module, nn.Dropout):
                module.train()


def resized(image: torch.Tensor, target: torch.Tensor, size: tuple[int, int] | None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` ``[B, M, C, H, W]`` and ``target`` ``[B, C, H, W]`` at ``size``: bilinear with antialiasing, as the
    reference's PIL ``Resize`` (it resizes the 512-px Taskonomy images to 256 for evaluation)."""
    if size is None or tuple(target.shape[-2:]) == tuple(size):
        return image, target

    def resize(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)

    return resize(image.flatten(0, 1)).unflatten(0, image.shape[:2]), resize(target)


def gather_sum(tensor: torch.Tensor, gather: Gather) -> torch.Tensor:
    """A sum over workers through ``gather`` (which concatenates along dim 0)."""
    return gather(tensor.unsqueeze(0)).sum(0)
