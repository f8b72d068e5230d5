"""Semantic segmentation: cross-entropy on every branch and the ensemble, mIoU from confusion matrices."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fusionlab.config import Config
from fusionlab.data import Manifest
from fusionlab.models import FusionModel, build, load_imagenet_weights

from .context import WorkerContext
from .device import EpochTotals, batch_to_device, to_device
from .losses import segmentation_loss, upsample
from .metrics import ConfusionMatrix, scores
from .optim import before_step, build_optimizer, set_epoch_lr
from .steps import Draw, Evaluation, autocast, encoder_lr, freeze_batchnorm, metric_safe, scoring_model, unwrap
from .unlabelled import no_labelled_pixels, unlabelled


def build_model(config: Config, manifest: Manifest) -> FusionModel:
    model = build(config.model.name, backbone=config.model.backbone, num_classes=manifest.label.num_classes,
                  modalities=config.data.modalities, **config.model.build_kwargs(len(config.data.modalities)))
    if config.model.pretrained:
        load_imagenet_weights(model, config.model.pretrained, config.model.pretrained_version, config.model.backbone)
    return model


def train_epoch(model: nn.Module, batches, optimizer, config: Config, ctx: WorkerContext, ignore_index: int,
                epoch: int) -> float:
    """One epoch; the mean loss over all workers. No host synchronisation inside a step: losses and a non-finite
    count stay on the device until the epoch ends, where a diverged run raises ``TrainingDiverged``, or
    ``NoLabelledPixels`` where a batch had no labelled pixel (its loss is NaN: ``unlabelled.py``)."""
    model.train()
    if config.train.freeze_bn:
        freeze_batchnorm(model)
    core = unwrap(model)
    totals = EpochTotals(["loss"], ctx.device)
    for batch in batches:
        image = batch_to_device(batch["image"].transpose(0, 1), config.train, ctx.device)  # [B, M, ...] -> [M, B, ...]
        label = batch["label"].to(ctx.device, non_blocking=True)
        with autocast(config, ctx.device):
            output = model(image)
        loss, _ = segmentation_loss(output, label, core, ignore_index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        before_step(optimizer, config.train)
        optimizer.step()
        core.after_optimizer_step(encoder_lr(optimizer))  # e.g. CEN's proximal L1 step, at the encoder's rate
        totals.add(loss, unlabelled=unlabelled(label, ignore_index))

    def no_labels(steps_without: int, steps: int) -> Exception:
        return no_labelled_pixels(steps_without, steps, epoch, config.data.path, config.data.train_split, ignore_index)

    return totals.finish(ctx.all_reduce_sum, epoch, unlabelled_error=no_labels)["loss"]


@torch.no_grad()
def validate(model: nn.Module, batches, config: Config, ctx: WorkerContext, manifest: Manifest,
             keep_examples: int = 0, prefix: str = "val"
             ) -> tuple[dict[str, float], torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Metrics for every branch and the ensemble (``<prefix>/miou``) from confusion matrices summed over all
    workers, each worker's ``batches`` its own part of the split (of any length, none included: the forwards run on
    ``steps.scoring_model``)."""
    model.eval()
    core = scoring_model(model)
    names = core.branch_names()
    num_classes, ignore = manifest.label.num_classes, manifest.label.ignore_index
    matrices = [ConfusionMatrix(num_classes, ignore, ctx.device) for _ in range(len(names) + 1)]
    examples: list[dict[str, torch.Tensor]] = []
    for batch in batches:
        image = batch_to_device(batch["image"].transpose(0, 1), config.train, ctx.device)
        label = batch["label"].to(ctx.device, non_blocking=True)
        with autocast(config, ctx.device):
            output = core(image)
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


@torch.no_grad()
def split_scores(core: FusionModel, config: Config, manifest: Manifest, device: torch.device, split: str,
                 prefix: str, multi_scale: bool = False) -> dict[str, float]:
    """The ensemble on ``split`` at full resolution, as ``fusionlab evaluate`` scores it (``multi_scale``: over
    ``model.eval_scales`` and, with ``model.eval_flip``, their mirror images): ``<prefix>/<metric>``."""
    from fusionlab.inference.servable import servable

    from .evaluate import evaluate

    predictor = servable(core, manifest, config.model.eval_upsample).to(device)
    protocol = {"scales": config.model.eval_scales, "flip": config.model.eval_flip} if multi_scale else {}
    metrics = evaluate(predictor, config.data.path, split, device=device, **protocol)
    return {f"{prefix}/{key}": value for key, value in metrics.items()}


def test_scores(core: FusionModel, config: Config, manifest: Manifest, device: torch.device) -> dict[str, float]:
    """The selected model on the test split: ``test/<metric>``."""
    return split_scores(core, config, manifest, device, config.data.test_split, "test")


def multi_scale_scores(core: FusionModel, config: Config, manifest: Manifest, device: torch.device
                       ) -> dict[str, float]:
    """With ``model.eval_scales`` / ``model.eval_flip`` set: the selected model on the val and test splits (those
    the dataset has) over those scales and mirror images, ``<split>_ms/<metric>``; nothing otherwise."""
    from fusionlab.models.multiscale import MULTI_SCALE_SUFFIX

    if not config.model.multi_scale:
        return {}
    scores: dict[str, float] = {}
    for prefix, split in (("val", config.data.val_split), ("test", config.data.test_split)):
        if split and split in manifest.splits:
            scores.update(split_scores(core, config, manifest, device, split, f"{prefix}{MULTI_SCALE_SUFFIX}",
                                       multi_scale=True))
    return scores


class SegmentationTask:
    """Selected on the highest ensemble mIoU; nothing to checkpoint beyond the model and its optimiser."""

    metric, lower_is_better = "miou", False

    def __init__(self, config: Config, manifest: Manifest):
        self.config, self.manifest = config, manifest

    def build(self, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
        # on the device before the optimiser is built: a fused optimiser needs its parameters there
        model = to_device(build_model(self.config, self.manifest), self.config.train, device)
        return model, build_optimizer(model, self.config.train)

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def prepare(self, ctx: WorkerContext) -> None:
        pass

    def run_tags(self) -> dict[str, str]:
        from fusionlab.models.multiscale import protocol_label
        from fusionlab.tracking.tags import EVAL_PROTOCOL_TAG

        return {EVAL_PROTOCOL_TAG: protocol_label(self.config.model.eval_scales, self.config.model.eval_flip)}

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, ctx: WorkerContext,
                    epoch: int) -> dict[str, float]:
        set_epoch_lr(optimizer, self.config.train, epoch)
        return {"train/loss": train_epoch(model, ctx.train_batches(epoch), optimizer, self.config, ctx,
                                          self.manifest.label.ignore_index, epoch)}

    def evaluate(self, model: nn.Module, ctx: WorkerContext, keep_examples: int, prefix: str) -> Evaluation:
        metrics, matrix, examples = validate(model, ctx.val_batches(), self.config, ctx, self.manifest,
                                             keep_examples=keep_examples, prefix=prefix)
        return Evaluation(metrics, {"matrix": matrix, "examples": examples})

    def log_epoch_extras(self, tracker: Any, epoch: int, core: FusionModel, evaluation: Evaluation) -> None:
        pass

    def test_scores(self, core: FusionModel, device: torch.device) -> dict[str, float]:
        return test_scores(core, self.config, self.manifest, device)

    def multi_scale_scores(self, core: FusionModel, device: torch.device) -> dict[str, float]:
        return multi_scale_scores(core, self.config, self.manifest, device)

    def figures(self, core: FusionModel, kept: dict[str, Any]) -> dict[str, Draw]:
        from fusionlab.tracking import plots

        figures: dict[str, Draw] = {
            "gamma_histograms.png": lambda path: plots.gamma_histograms(core, path),
            "exchange_by_layer.png": lambda path: plots.exchange_by_layer(core, path),
            "predictions.png": lambda path: plots.prediction_overlays(kept.get("examples", []), self.manifest,
                                                                      list(core.modalities), path),
        }
        matrix = kept.get("matrix")
        if matrix is not None:
            figures["confusion_matrix.png"] = lambda path: plots.confusion_matrix(matrix, self.manifest.label.classes,
                                                                                  path)
        return figures

    def predictor(self, core: FusionModel) -> nn.Module:
        from fusionlab.inference.servable import servable

        return servable(core, self.manifest, self.config.model.eval_upsample)
