"""The per-worker loop for translation datasets: generator + PatchGAN discriminator, FID/KID on validation."""

from __future__ import annotations

import shutil
from typing import Any

import torch
from torch import nn

from fusionlab.config import Config
from fusionlab.data import Manifest
from fusionlab.fid import resolve_extractor
from fusionlab.models import build, build_discriminator
from fusionlab.models.discriminator import build_branch_discriminator

from .checkpoint import save_checkpoint
from .context import WorkerContext
from .device import configure_backends, maybe_compile, to_device, use_fused
from .identity import checkpoint_changes, refuse_unsafe
from .loop import autocast, encoder_lr, model_statistics, unwrap
from .optim import build_optimizer, set_epoch_lr, stage_lr
from .selection import Selection, evaluation_prefix, selection_tags
from .translation import evaluate_translation, scoring_options, train_epoch

EXAMPLES = 4  # validation samples drawn in the image grid


def build_generator(config: Config, manifest: Manifest) -> nn.Module:
    return build(config.model.name, backbone=config.model.backbone, task="translation",
                 num_classes=manifest.modalities[manifest.target].channels, modalities=config.data.modalities,
                 **config.model.build_kwargs(len(config.data.modalities)))


def build_pair(config: Config, manifest: Manifest) -> tuple[nn.Module, nn.Module]:
    """The generator and its discriminator (``train.gan.discriminators``: see ``translation``'s docstring)."""
    generator = build_generator(config, manifest)
    out_channels = manifest.modalities[manifest.target].channels
    base = config.train.gan.discriminator_filters
    if config.train.gan.discriminators == "per_branch":
        return generator, build_branch_discriminator(branch_channels(generator), out_channels, base=base)
    return generator, build_discriminator(len(config.data.modalities), out_channels, base=base)


def branch_channels(generator: nn.Module) -> int:
    """Channels of one branch's input (3; 3 * M for the early-fusion concat's single branch)."""
    probe = torch.zeros(len(generator.modalities), 1, generator.in_channels, 1, 1)
    return generator.branch_inputs(probe).shape[2]


def discriminator_optimizer(discriminator: nn.Module, config: Config) -> torch.optim.Optimizer:
    return torch.optim.Adam(discriminator.parameters(), lr=config.train.gan.lr_discriminator,
                            betas=config.train.betas, fused=use_fused(config.train, discriminator.parameters()) or None)


def discriminator_lr(config: Config, epoch: int) -> float:
    """``train.gan.lr_discriminator`` scaled as the decoder's stage schedule scales its first rate."""
    first = stage_lr(config.train.lr_decoder, 0, config.train.epochs)
    if first == 0:
        return config.train.gan.lr_discriminator
    return config.train.gan.lr_discriminator * stage_lr(config.train.lr_decoder, epoch, config.train.epochs) / first


def check_feature_weights(config: Config) -> None:
    """Before any worker starts: the Inception file FID/KID were asked to use must be there (the error says where
    it was looked for and how to get it)."""
    from fusionlab.fid import inception_weights_path
    from fusionlab.fid.inception import InceptionWeightsMissing, missing_weights_message

    settings = config.train.fid
    if settings.features == "inception" or (settings.features == "auto" and settings.weights):
        path = inception_weights_path(settings.weights)
        if not path.is_file():
            raise InceptionWeightsMissing(missing_weights_message(path))


def feature_extractor(config: Config, device: torch.device):
    extractor = resolve_extractor(config.train.fid.features, config.train.fid.weights)
    if isinstance(extractor, nn.Module):
        extractor.to(device).eval()
    return extractor


def translation_loop(payload: dict[str, Any], ctx: WorkerContext, config: Config, manifest: Manifest) -> None:
    torch.manual_seed(config.train.seed)
    configure_backends(config.train, ctx.device)
    generator, discriminator = (to_device(module, config.train, ctx.device)  # before the (fused) optimisers
                                for module in build_pair(config, manifest))
    optimizer_g = build_optimizer(generator, config.train)
    optimizer_d = discriminator_optimizer(discriminator, config)
    start_epoch, history = 0, []
    selection = Selection.for_run(config, "fid", lower_is_better=True, keep_state=ctx.rank == 0)
    state = ctx.restore()
    if state is not None:
        refuse_unsafe(checkpoint_changes(state, config, manifest.digest), config.run_name(),
                      f"its checkpoint of epoch {state['epoch']}")
        generator.load_state_dict(state["model"])
        optimizer_g.load_state_dict(state["optimizer"])
        discriminator.load_state_dict(state["discriminator"])
        optimizer_d.load_state_dict(state["discriminator_optimizer"])
        start_epoch, history = state["epoch"] + 1, state["history"]
        selection.load_state_dict(state.get("selection"), state["epoch"], generator)
    del state  # the restored tensors: not kept for the whole run beside the live ones
    generator = maybe_compile(ctx.prepare_model(generator), config.train)
    discriminator = maybe_compile(ctx.prepare_model(discriminator), config.train)
    core = unwrap(generator)
    extractor = feature_extractor(config, ctx.device)
    target_spec = manifest.modalities[manifest.target]

    tracker = None
    if ctx.rank == 0:
        from fusionlab.tracking import RunTracker
        from fusionlab.tracking.runs import run_tags

        tags = {**run_tags(manifest, core), "fusionlab.fid_features": extractor.name, **selection_tags(config),
                **payload.get("tags", {})}
        tracker = RunTracker.open(payload["tracking_uri"], config, payload.get("parent_run_id"), tags,
                                  payload.get("launch"))
        tracker.catch_up(history)

    def after_generator_step() -> None:
        step = getattr(core, "after_optimizer_step", None)
        if step is not None:  # CEN's proximal L1 step
            step(encoder_lr(optimizer_g))

    def autocast_here():
        return autocast(config, ctx.device)

    if history and start_epoch >= config.train.epochs:
        ctx.report(history[-1], None)  # restored after its last epoch: see loop.train_loop
    for epoch in range(start_epoch, config.train.epochs):
        set_epoch_lr(optimizer_g, config.train, epoch)
        for group in optimizer_d.param_groups:
            group["lr"] = discriminator_lr(config, epoch)
        metrics: dict[str, Any] = {"epoch": epoch}
        metrics.update(train_epoch(generator, discriminator, ctx.train_batches(epoch), (optimizer_g, optimizer_d),
                                   config, ctx, target_spec, epoch, autocast_here, after_generator_step))
        last = epoch == config.train.epochs - 1
        if (epoch + 1) % config.train.val_every == 0 or last:
            val_metrics, examples = evaluate_translation(
                generator, ctx.val_batches(), config.train.fid, ctx.device, manifest, list(config.data.modalities),
                extractor, ctx.all_gather, keep_examples=EXAMPLES if ctx.rank == 0 else 0,
                prefix=evaluation_prefix(config), **scoring_options(config))
            metrics.update(val_metrics)
            selection.offer(epoch, val_metrics, core, final=last, examples=examples)
            if tracker is not None:
                tracker.log_translation_examples(examples, list(config.data.modalities), core.branch_names(),
                                                 f"images/epoch_{epoch:04d}.png")
        metrics.update(model_statistics(core))
        history.append(metrics)
        checkpoint_dir = None
        if ctx.rank == 0 and ((epoch + 1) % config.train.checkpoint_every == 0 or last):
            checkpoint_dir = ctx.new_checkpoint_dir()
            save_checkpoint(checkpoint_dir, {
                "model": core.state_dict(), "optimizer": optimizer_g.state_dict(),
                "discriminator": unwrap(discriminator).state_dict(),
                "discriminator_optimizer": optimizer_d.state_dict(),
                "epoch": epoch, "history": history, "selection": selection.state_dict(epoch),
                "config": config.model_dump(mode="json", by_alias=True), "manifest_sha256": manifest.digest})
        ctx.report(metrics, checkpoint_dir)
        if checkpoint_dir is not None and checkpoint_dir.exists():
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        if tracker is not None:
            tracker.log_epoch(metrics)

    if tracker is not None:
        if start_epoch < config.train.epochs or not tracker.final_logged:  # the selected generator (loop.train_loop)
            selection.load_into(core)
            final = selection.final_metrics()
            test_split = config.data.test_split
            if selection.mode != "best_test" and test_split and test_split in manifest.splits:
                final.update(test_scores(core, config, manifest, ctx.device, extractor))
            tracker.log_metrics(final, step=selection.final_step(config.train.epochs))
            tracker.log_translation_final(core, manifest, selection.extras.get("examples", []))
            tracker.mark_final_logged()
        tracker.close()


@torch.no_grad()
def test_scores(core: nn.Module, config: Config, manifest: Manifest, device: torch.device,
                extractor) -> dict[str, float]:
    """The test split once, on rank 0 alone: ``test/fid``, ``test/kid``, ``test/l1`` (and per branch)."""
    from fusionlab.data.torch_dataset import ShardDataset

    dataset = ShardDataset(config.data.path, config.data.test_split, config.data.modalities)
    batches = torch.utils.data.DataLoader(dataset, batch_size=config.train.batch_size)
    metrics, _ = evaluate_translation(core, batches, config.train.fid, device, manifest, list(config.data.modalities),
                                      extractor, gather=lambda tensor: tensor, prefix="test",
                                      **scoring_options(config))
    return metrics
