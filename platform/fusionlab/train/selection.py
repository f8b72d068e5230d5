"""Which epoch's model a run keeps, scores on test and logs (``train.selection``).

- ``best_val``: the best epoch on the val split; the test split is scored once, at the end, with that model.
- ``best_test``: the references' protocol: the per-epoch evaluation runs on the test split (its metrics are logged
  as ``test/...``, never as ``val/...``) and the best epoch on it is kept; its test figures are the final ones.
- ``last``: the last epoch.

For the best-epoch modes the selected epoch's evaluation metrics (and ``selected_epoch``) are logged again at step
``train.epochs``, one past the last epoch, so the final value of each metric, which ``promote`` and ``report`` read,
is the logged model's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fusionlab.config import Config
from fusionlab.tracking.tags import SELECTION_SPLIT_TAG, SELECTION_TAG

SELECTED_EPOCH = "selected_epoch"
# The rank of a checkpoint that holds no selected epoch: below every score, and finite (it is reported with the epoch's
# metrics, and Tune's loggers warn at every non-finite value).
UNRANKED = -1e30


def evaluation_split(config: Config) -> str:
    """The split evaluated every ``train.val_every`` epochs (and on the last): test under best_test, else val."""
    return config.data.test_split if config.train.selection == "best_test" else config.data.val_split


def evaluation_prefix(config: Config) -> str:
    """The per-epoch evaluation's metric prefix: the role of its split, so test scores are never named val."""
    return "test" if config.train.selection == "best_test" else "val"


def selection_tags(config: Config) -> dict[str, str]:
    split = "none" if config.train.selection == "last" else evaluation_split(config)
    return {SELECTION_TAG: config.train.selection, SELECTION_SPLIT_TAG: split}


@dataclass
class Selection:
    """The kept epoch: its score on ``metric``, its evaluation's metrics, what the caller keeps beside them
    (``extras``: a confusion matrix, example predictions) and, where ``keep_state`` (the rank that logs), its weights
    on the CPU. ``state is None`` means the model holds the selected weights itself: always under ``last``, and
    after the final epoch was selected (no copy is made for an epoch that nothing trains after)."""

    mode: str
    metric: str
    lower_is_better: bool = False
    keep_state: bool = True
    epoch: int | None = None
    score: float = math.nan
    metrics: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    state: dict[str, torch.Tensor] | None = None

    @classmethod
    def for_run(cls, config: Config, metric: str, lower_is_better: bool, keep_state: bool) -> Selection:
        """``metric`` without its prefix (``miou``, ``fid``): the prefix follows the evaluated split."""
        return cls(config.train.selection, f"{evaluation_prefix(config)}/{metric}", lower_is_better, keep_state)

    def better(self, score: float) -> bool:
        """Strictly better than the kept score (a tie keeps the earlier epoch, as the references' Saver does); a
        non-finite score is the worst, and any score replaces a non-finite one."""
        if self.mode == "last" or self.epoch is None or not math.isfinite(self.score):
            return True
        if not math.isfinite(score):
            return False
        return score < self.score if self.lower_is_better else score > self.score

    def offer(self, epoch: int, metrics: dict[str, float], model: nn.Module, final: bool = False,
              **extras: Any) -> bool:
        """Keep this epoch if its evaluation is better; ``final``: no epoch trains after it."""
        score = float(metrics.get(self.metric, math.nan))
        if not self.better(score):
            return False
        self.epoch, self.score, self.metrics, self.extras = epoch, score, dict(metrics), extras
        if self.mode == "last" or not self.keep_state or final:
            self.state = None
        else:
            self.state = cpu_copy(model.state_dict(), into=self.state)
        return True

    def load_into(self, model: nn.Module) -> None:
        """Give ``model`` the selected weights (nothing to do when it holds them already)."""
        if self.state is not None:
            model.load_state_dict(self.state)

    def final_step(self, epochs: int) -> int:
        return epochs - 1 if self.mode == "last" else epochs

    def final_metrics(self) -> dict[str, float]:
        """What is logged at ``final_step``: the selected epoch and, for the best-epoch modes, its evaluation."""
        if self.epoch is None:
            return {}
        return {SELECTED_EPOCH: self.epoch, **({} if self.mode == "last" else self.metrics)}

    def checkpoint_score(self, epoch: int) -> float:
        """How the checkpoint of ``epoch`` ranks for keeping (higher is kept; the latest is always kept as well):
        the selected epoch's outranks every other, so it stays beside the latest and holds the selected weights,
        which no later checkpoint copies. Under ``last``, the newest ranks first."""
        if self.mode == "last":
            return float(epoch)
        if epoch != self.epoch or not math.isfinite(self.score):
            return UNRANKED
        return (-self.score if self.lower_is_better else self.score) - epoch * 1e-9  # a tie: the earlier, as better()

    def state_dict(self, epoch: int) -> dict[str, Any]:
        """For the checkpoint of ``epoch`` (tensors, numbers and strings only: ``weights_only`` loads it). The
        selected weights are not in it: they are the selected epoch's own checkpoint, which is kept
        (``checkpoint_score``)."""
        return {"mode": self.mode, "metric": self.metric, "epoch": self.epoch, "score": self.score,
                "metrics": self.metrics, "extras": self.extras, "model": None}

    def load_state_dict(self, saved: dict[str, Any] | None, checkpoint_epoch: int, model: nn.Module,
                        load_kept: Callable[[int], dict[str, Any]]) -> None:
        """Resume from ``state_dict``; ``model`` holds the checkpoint's weights, ``load_kept(epoch)`` reads the kept
        checkpoint of an earlier selected epoch. A checkpoint from before selection was recorded, or one that
        selected on another metric, starts the selection afresh."""
        if not saved or saved.get("metric") != self.metric or saved.get("mode") != self.mode:
            return
        self.epoch, self.score = saved["epoch"], float(saved["score"])
        self.metrics, self.extras = dict(saved["metrics"]), dict(saved["extras"])
        if self.mode == "last" or not self.keep_state or self.epoch is None:
            self.state = None
        elif saved["model"] is not None:  # a checkpoint that carried the selected weights (fusionlab before 0.2)
            self.state = saved["model"]
        elif self.epoch == checkpoint_epoch:  # training goes on from here: the kept weights need their own copy
            self.state = cpu_copy(model.state_dict())
        else:
            self.state = load_kept(self.epoch)["model"]


def cpu_copy(state: dict[str, torch.Tensor], into: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """``state`` detached on the CPU; the tensors of ``into`` (an earlier copy of the same model) are reused, so a
    new best epoch costs one device-to-host copy and no new allocation."""
    if into is not None and into.keys() == state.keys():
        for key, value in state.items():
            into[key].copy_(value.detach())
        return into
    return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}
