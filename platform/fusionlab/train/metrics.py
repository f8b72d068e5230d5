"""Segmentation metrics from one confusion matrix accumulated over a whole split (never averaged per batch)."""

from __future__ import annotations

import torch


class ConfusionMatrix:
    """``matrix[t, p]`` counts pixels of true class t predicted as p; pixels labelled ``ignore_index`` are skipped."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str = "cpu"):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        valid = target != self.ignore_index
        index = target[valid] * self.num_classes + prediction[valid]
        self.matrix += torch.bincount(index, minlength=self.num_classes**2).view(self.num_classes, -1)

    def compute(self) -> dict[str, float]:
        return scores(self.matrix)


def scores(matrix: torch.Tensor) -> dict[str, float]:
    """Pixel accuracy, mean class accuracy and mIoU; classes absent from both truth and prediction don't count."""
    matrix = matrix.double()
    true_positive = matrix.diag()
    per_truth = matrix.sum(1)
    union = per_truth + matrix.sum(0) - true_positive
    total = matrix.sum()
    present = per_truth > 0
    return {
        "pixel_acc": float(true_positive.sum() / total) if total > 0 else 0.0,
        "mean_acc": float((true_positive[present] / per_truth[present]).mean()) if present.any() else 0.0,
        "miou": float((true_positive[union > 0] / union[union > 0]).mean()) if (union > 0).any() else 0.0,
    }
