"""The rows of ``fusionlab report``'s table and the scores in them: what each task's table shows (``TaskMetrics``), one
run's scores (``RunScores``) and a row of runs (``Row``). A leaf of the report: ``report_rows.py`` fills rows from
MLflow, ``report_paired.py`` compares two of them, ``report_table.py`` prints them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from .tags import MANIFEST_TAG, RECIPE_TAG, SELECTION_TAG, STOPPED_EARLY_TAG

NOT_RECORDED = "not recorded"  # runs from before recipes and selection were tracked


@dataclass(frozen=True)
class TaskMetrics:
    """What a task's table shows: the ensemble's metrics (logged as ``<split>/<metric>``), their headers, how a
    logged value becomes the shown one (``scale``), and the metric that ranks rows."""

    metrics: tuple[str, ...]
    headers: dict[str, str]
    short_headers: dict[str, str]  # for a terminal
    unit: str  # after a metric's header in the Markdown: " (%)"
    scale: float  # shown = logged × scale
    rank: str  # ranks sweep rows and picks the best unimodal row
    lower_is_better: bool
    paper: tuple[str, ...]  # the metrics a published figure (tag ``fusionlab.paper``) may give
    scores: str  # the caption's words for the scores, ``{split}`` filled in
    decimals: dict[str, int] = field(default_factory=dict)  # shown digits, 1 unless given

    def best(self, values: list[tuple[float, Any]]) -> Any:
        """The item of the best ``(score, item)`` pair."""
        return (min if self.lower_is_better else max)(values, key=lambda pair: pair[0])[1]

    def order(self, value: float | None) -> tuple[bool, float]:
        """Sort key: best first, missing last."""
        return (value is None, 0.0 if value is None else value if self.lower_is_better else -value)


SEGMENTATION = TaskMetrics(
    metrics=("pixel_acc", "mean_acc", "miou"),
    headers={"pixel_acc": "Pixel Acc.", "mean_acc": "Mean Acc.", "miou": "mIoU"},
    short_headers={"pixel_acc": "pix acc", "mean_acc": "mean acc", "miou": "mIoU"},
    unit=" (%)", scale=100.0, rank="miou", lower_is_better=False, paper=("pixel_acc", "mean_acc", "miou"),
    scores="ensemble scores on the {split} split ({protocol}), percent")
TRANSLATION = TaskMetrics(
    metrics=("fid", "kid", "l1"),  # kid is logged ×100, as the papers print it
    headers={"fid": "FID", "kid": "KID×100", "l1": "L1"},
    short_headers={"fid": "FID", "kid": "KID×100", "l1": "L1"},
    unit="", scale=1.0, rank="fid", lower_is_better=True, paper=("fid", "kid"),
    scores="the ensemble's FID, KID×100 and L1 on the {split} split (lower is better for all three)",
    decimals={"fid": 2, "kid": 2, "l1": 3})  # local-extractor FIDs are small: 2 digits
TASKS = {"segmentation": SEGMENTATION, "translation": TRANSLATION}


@dataclass(frozen=True)
class RunScores:
    run_id: str
    run_name: str
    label: str  # the grid cell's label, else the run name
    model: str
    params: dict[str, str]
    tags: dict[str, str]
    scores: dict[str, float]  # as logged (segmentation: fractions), on the report's split
    start_time: int
    epochs: int | None = None  # epochs it trained, for trials stopped early

    @property
    def stopped_early(self) -> bool:
        return self.tags.get(STOPPED_EARLY_TAG) == "true"


@dataclass
class Row:
    label: str
    method: str
    modalities: str
    backbone: str
    runs: list[RunScores]
    paper: dict[str, Any] | None
    parameters: int | None
    varied: dict[str, str] = field(default_factory=dict)  # searched parameters that differ between rows
    task: TaskMetrics = SEGMENTATION
    flops: int | None = None  # forward FLOPs per sample at the dataset's image size

    def mean(self, metric: str) -> float | None:
        """As shown (segmentation: percent)."""
        values = [run.scores[metric] for run in self.runs if metric in run.scores]
        return self.task.scale * statistics.fmean(values) if values else None

    def std(self, metric: str) -> float | None:
        values = [self.task.scale * run.scores[metric] for run in self.runs if metric in run.scores]
        return statistics.stdev(values) if len(values) > 1 else None

    @property
    def unimodal(self) -> bool:
        return self.runs[0].model == "unimodal"

    @property
    def recipe(self) -> str:
        return self.runs[0].tags.get(RECIPE_TAG, NOT_RECORDED)

    @property
    def selection(self) -> str:
        return self.runs[0].tags.get(SELECTION_TAG, NOT_RECORDED)

    @property
    def manifests(self) -> tuple[str, ...]:
        """The dataset manifests (sha256, "" where a run has none) its runs were trained on."""
        return tuple(sorted({run.tags.get(MANIFEST_TAG, "") for run in self.runs}))
