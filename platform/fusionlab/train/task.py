"""What the one training loop (``loop.train_loop``) asks of a task: segmentation or image-to-image translation.

The loop owns the skeleton (seed, restore, selection, checkpoints, reports, tracking); a ``Task`` builds the model
and its optimiser, trains one epoch, evaluates, and says what a run checkpoints beside the model and optimiser, what
it draws and which predictor it logs. ``task_for`` picks the task once, from the dataset's manifest.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from fusionlab.config import Config
from fusionlab.data import Manifest
from fusionlab.models import FusionModel

from .context import WorkerContext
from .segmentation_task import SegmentationTask
from .steps import Draw, Evaluation
from .translation_task import TranslationTask


class Task(Protocol):
    metric: str  # the selection metric without its prefix: "miou", "fid"
    lower_is_better: bool

    def build(self, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
        """The model on ``device`` and its optimiser (its encoder/decoder groups); a task's auxiliary modules (the
        discriminator and its optimiser) are built here too."""
        ...

    def extra_state(self) -> dict[str, Any]:
        """What a checkpoint holds beyond the model, the optimiser and the loop's own keys."""
        ...

    def load_extra_state(self, state: dict[str, Any]) -> None: ...

    def prepare(self, ctx: WorkerContext) -> None:
        """After the model is prepared for the workers: the auxiliary modules prepared as it is, scorers loaded."""
        ...

    def run_tags(self) -> dict[str, str]:
        """Tags of this task's runs beyond the common ones (``tracking.runs.run_tags``)."""
        ...

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, ctx: WorkerContext,
                    epoch: int) -> dict[str, float]:
        """Set the epoch's learning rates, train on ``ctx.train_batches(epoch)``; the epoch's ``train/...``."""
        ...

    def evaluate(self, model: nn.Module, ctx: WorkerContext, keep_examples: int, prefix: str) -> Evaluation:
        """The per-epoch evaluation on ``ctx.val_batches()``, its metrics named ``<prefix>/...``."""
        ...

    def log_epoch_extras(self, tracker: Any, epoch: int, core: FusionModel, evaluation: Evaluation) -> None:
        """Per-epoch artifacts beside the metrics (translation's image grid), on the rank that tracks."""
        ...

    def test_scores(self, core: FusionModel, device: torch.device) -> dict[str, float]:
        """The selected model on the test split, on the rank that tracks: ``test/<metric>``."""
        ...

    def multi_scale_scores(self, core: FusionModel, device: torch.device) -> dict[str, float]:
        """The selected model over ``model.eval_scales`` and mirror images, on the rank that tracks:
        ``<split>_ms/<metric>`` (none unless the config asks for them)."""
        ...

    def figures(self, core: FusionModel, kept: dict[str, Any]) -> dict[str, Draw]:
        """The final plots, by file name, of the selected model and what its evaluation kept."""
        ...

    def predictor(self, core: FusionModel) -> nn.Module:
        """The model as it is logged and served (``SegmentationPredictor`` / ``TranslationPredictor``)."""
        ...


def task_for(config: Config, manifest: Manifest) -> Task:
    """The task the dataset's manifest declares."""
    tasks = {"segmentation": SegmentationTask, "translation": TranslationTask}
    if manifest.task not in tasks:
        raise ValueError(f"dataset {config.data.path}: task {manifest.task!r} is not one of {sorted(tasks)}")
    return tasks[manifest.task](config, manifest)
