"""The per-worker training loop. It knows nothing of Tune; it reaches Ray only through its WorkerContext."""

from __future__ import annotations

import contextlib
import re
import shutil
from typing import Any

import torch
from torch import nn

from fusionlab.config import Config
from fusionlab.data import Manifest
from fusionlab.models import FusionModel, build, exchange_statistics, load_imagenet_resnet
from fusionlab.models.sparsity import overall_exchanged_fraction

from .checkpoint import save_checkpoint
from .context import WorkerContext
from .device import EpochTotals, batch_to_device, configure_backends, maybe_compile, to_device
from .identity import checkpoint_changes, refuse_unsafe
from .losses import segmentation_loss, upsample
from .metrics import ConfusionMatrix, scores
from .optim import build_optimizer, set_epoch_lr
from .selection import Selection, evaluation_prefix, selection_tags

EXAMPLES = 4  # evaluation samples drawn in the predictions plot


def build_model(config: Config, manifest: Manifest) -> FusionModel:
    model = build(config.model.name, backbone=config.model.backbone, num_classes=manifest.label.num_classes,
                  modalities=config.data.modalities, **config.model.build_kwargs(len(config.data.modalities)))
    if config.model.pretrained:
        load_imagenet_resnet(model, config.model.pretrained, config.model.pretrained_version, config.model.backbone)
    return model


def unwrap(model: nn.Module) -> FusionModel:
    """The bare model under ``torch.compile`` (``_orig_mod``) and DDP (``module``)."""
    model = getattr(model, "_orig_mod", model)
    return model.module if hasattr(model, "module") else model


def freeze_batchnorm(model: nn.Module) -> None:
    """BN layers in eval mode (running statistics fixed) while gamma/beta still train: the references' setting."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def autocast_dtype(config: Config, device: torch.device) -> torch.dtype | None:
    """The forward's autocast precision: ``train.amp`` off (the reference recipe) is fp32 on every device, auto is
    bf16 on CUDA only."""
    if config.train.amp == "off" or (config.train.amp == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def autocast(config: Config, device: torch.device):
    dtype = autocast_dtype(config, device)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def encoder_lr(optimizer: torch.optim.Optimizer) -> float:
    return next(group["lr"] for group in optimizer.param_groups if group.get("name") == "encoder")


def train_epoch(model: nn.Module, batches, optimizer, config: Config, ctx: WorkerContext, ignore_index: int,
                epoch: int) -> float:
    """One epoch; the mean loss over all workers. No host synchronisation inside a step: losses and a non-finite
    count stay on the device until the epoch ends, where a diverged run raises ``TrainingDiverged``."""
    model.train()
    if config.train.freeze_bn:
        freeze_batchnorm(model)
    totals = EpochTotals(["loss"], ctx.device)
    for batch in batches:
        image = batch_to_device(batch["image"].transpose(0, 1), config.train, ctx.device)  # [B, M, ...] -> [M, B, ...]
        label = batch["label"].to(ctx.device, non_blocking=True)
        with autocast(config, ctx.device):
            output = model(image)
        loss, _ = segmentation_loss(output, label, unwrap(model), ignore_index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        after_step = getattr(unwrap(model), "after_optimizer_step", None)
        if after_step is not None:  # e.g. CEN's proximal L1 step, at the encoder's current rate
            after_step(encoder_lr(optimizer))
        totals.add(loss)
    return totals.finish(ctx.all_reduce_sum, epoch)["loss"]


@torch.no_grad()
def validate(model: nn.Module, batches, config: Config, ctx: WorkerContext, manifest: Manifest,
             keep_examples: int = 0, prefix: str = "val"
             ) -> tuple[dict[str, float], torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Metrics for every branch and the ensemble (``<prefix>/miou``) from confusion matrices summed over all
    workers."""
    core = unwrap(model)
    model.eval()
    names = core.branch_names()
    num_classes, ignore = manifest.label.num_classes, manifest.label.ignore_index
    matrices = [ConfusionMatrix(num_classes, ignore, ctx.device) for _ in range(len(names) + 1)]
    examples: list[dict[str, torch.Tensor]] = []
    for batch in batches:
        image = batch_to_device(batch["image"].transpose(0, 1), config.train, ctx.device)
        label = batch["label"].to(ctx.device)
        with autocast(config, ctx.device):
            output = model(image)
        size, mode = tuple(label.shape[-2:]), config.model.eval_upsample
        predictions = [upsample(b.float(), size, mode).argmax(1) for b in output.branches]
        predictions.append(upsample(output.ensemble.float(), size, mode).argmax(1))
        for matrix, prediction in zip(matrices, predictions, strict=True):
            matrix.update(prediction, label)
        if len(examples) < keep_examples:
            for i in range(min(keep_examples - len(examples), label.shape[0])):
                examples.append({"image": image[:, i].cpu(), "label": label[i].cpu(),
                                 "prediction": predictions[-1][i].cpu()})
    metrics = {}
    stacked = ctx.all_reduce_sum(torch.stack([m.matrix for m in matrices]))
    for name, matrix in zip([*names, None], stacked, strict=True):
        key_prefix = prefix if name is None else f"{prefix}/{metric_safe(name)}"
        metrics.update({f"{key_prefix}/{key}": value for key, value in scores(matrix).items()})
    return metrics, stacked[-1].cpu(), examples


def metric_safe(name: str) -> str:
    """A branch name as MLflow accepts it in a metric key (early concat's branch is ``rgb+depth``)."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", name)


def model_statistics(core: FusionModel) -> dict[str, float]:
    stats: dict[str, float] = {}
    per_layer = exchange_statistics(core)
    if per_layer:
        stats["exchange/fraction"] = overall_exchanged_fraction(core)
        for layer, fractions in per_layer.items():
            stats[f"exchange/fraction/{layer}"] = float(fractions.mean())
    alpha = getattr(core, "alpha", None)
    if alpha is not None:
        for name, weight in zip(core.branch_names(), torch.softmax(alpha.detach().float(), 0).tolist(), strict=True):
            stats[f"alpha/{metric_safe(name)}"] = weight
    return stats


@torch.no_grad()
def test_scores(core: FusionModel, config: Config, manifest: Manifest, device: torch.device) -> dict[str, float]:
    """The ensemble on the test split at full resolution, as ``fusionlab evaluate`` scores it: ``test/<metric>``."""
    from fusionlab.tracking.runs import servable

    from .evaluate import evaluate

    predictor = servable(core, manifest, config.model.eval_upsample).to(device)
    metrics = evaluate(predictor, config.data.path, config.data.test_split, device=device)
    return {f"test/{key}": value for key, value in metrics.items()}


def train_loop(payload: dict[str, Any], ctx: WorkerContext) -> None:
    """Train ``payload["config"]``; rank 0 tracks to MLflow at ``payload["tracking_uri"]``."""
    config = Config.model_validate(payload["config"])
    manifest = Manifest.load(config.data.path)
    if manifest.task == "translation":
        from .translation_loop import translation_loop

        return translation_loop(payload, ctx, config, manifest)
    torch.manual_seed(config.train.seed)  # identical initial weights on every worker (DDP also broadcasts them)
    configure_backends(config.train, ctx.device)
    model = to_device(build_model(config, manifest), config.train, ctx.device)  # before the (fused) optimiser
    optimizer = build_optimizer(model, config.train)
    start_epoch, history = 0, []
    selection = Selection.for_run(config, "miou", lower_is_better=False, keep_state=ctx.rank == 0)
    state = ctx.restore()
    if state is not None:
        refuse_unsafe(checkpoint_changes(state, config, manifest.digest), config.run_name(),
                      f"its checkpoint of epoch {state['epoch']}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"] + 1, state["history"]
        selection.load_state_dict(state.get("selection"), state["epoch"], model)
    del state  # the restored tensors: not kept for the whole run beside the live ones
    model = maybe_compile(ctx.prepare_model(model), config.train)
    core = unwrap(model)

    tracker = None
    if ctx.rank == 0:
        from fusionlab.tracking import RunTracker
        from fusionlab.tracking.runs import run_tags

        tags = {**run_tags(manifest, core), **selection_tags(config), **payload.get("tags", {})}
        tracker = RunTracker.open(payload["tracking_uri"], config, payload.get("parent_run_id"), tags,
                                  payload.get("launch"))
        tracker.catch_up(history)  # epochs checkpointed before an interruption but not yet logged

    if history and start_epoch >= config.train.epochs:
        # Restored after its last epoch (a sweep killed between the run's end and Tune recording it): report the
        # final metrics again, so the relaunched trial ends with its result instead of an empty one.
        ctx.report(history[-1], None)
    for epoch in range(start_epoch, config.train.epochs):
        set_epoch_lr(optimizer, config.train, epoch)
        loss = train_epoch(model, ctx.train_batches(epoch), optimizer, config, ctx, manifest.label.ignore_index,
                           epoch)
        metrics: dict[str, Any] = {"epoch": epoch, "train/loss": loss}
        last = epoch == config.train.epochs - 1
        if (epoch + 1) % config.train.val_every == 0 or last:
            val_metrics, matrix, examples = validate(model, ctx.val_batches(), config, ctx, manifest,
                                                     keep_examples=EXAMPLES if ctx.rank == 0 else 0,
                                                     prefix=evaluation_prefix(config))
            metrics.update(val_metrics)
            selection.offer(epoch, val_metrics, core, final=last, matrix=matrix, examples=examples)
        metrics.update(model_statistics(core))
        history.append(metrics)
        checkpoint_dir = None
        if ctx.rank == 0 and ((epoch + 1) % config.train.checkpoint_every == 0 or last):
            checkpoint_dir = ctx.new_checkpoint_dir()
            save_checkpoint(checkpoint_dir, {"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                                             "epoch": epoch, "history": history,
                                             "selection": selection.state_dict(epoch),
                                             "config": config.model_dump(mode="json", by_alias=True),
                                             "manifest_sha256": manifest.digest})
        ctx.report(metrics, checkpoint_dir)  # persisted before it is logged: a crash never logs an epoch twice
        if checkpoint_dir is not None and checkpoint_dir.exists():
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        if tracker is not None:
            tracker.log_epoch(metrics)

    if tracker is not None:
        # The selected model, its test scores and plots, once: again only if new epochs were trained, or if the
        # last attempt failed after its final checkpoint (while scoring test or logging the model).
        if start_epoch < config.train.epochs or not tracker.final_logged:
            selection.load_into(core)
            final = selection.final_metrics()
            test_split = config.data.test_split
            if selection.mode != "best_test" and test_split and test_split in manifest.splits:
                final.update(test_scores(core, config, manifest, ctx.device))
            tracker.log_metrics(final, step=selection.final_step(config.train.epochs))
            tracker.log_final(core, manifest, selection.extras.get("matrix"), selection.extras.get("examples", []),
                              config.model.eval_upsample)
            tracker.mark_final_logged()
        tracker.close()
