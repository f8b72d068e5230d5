"""Metrics come from one confusion matrix over the whole split, checked against a direct computation."""

import numpy as np
import torch

from fusionlab.train.metrics import ConfusionMatrix


def direct_scores(truth: np.ndarray, prediction: np.ndarray, num_classes: int, ignore: int):
    valid = truth != ignore
    t, p = truth[valid], prediction[valid]
    ious, accs = [], []
    for c in range(num_classes):
        inter = np.sum((t == c) & (p == c))
        union = np.sum((t == c) | (p == c))
        if union:
            ious.append(inter / union)
        if np.sum(t == c):
            accs.append(inter / np.sum(t == c))
    return {"pixel_acc": np.mean(t == p), "mean_acc": np.mean(accs), "miou": np.mean(ious)}


def test_accumulated_matrix_equals_direct_computation():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, (5, 20, 30))
    truth[rng.random(truth.shape) < 0.1] = 255
    truth[truth == 4] = 3  # class 4 absent from the truth
    prediction = np.where(rng.random(truth.shape) < 0.6, truth, rng.integers(0, 6, truth.shape)) % 6
    matrix = ConfusionMatrix(6, 255)
    for t, p in zip(truth, prediction, strict=True):  # batch by batch
        matrix.update(torch.from_numpy(p), torch.from_numpy(t))
    got = matrix.compute()
    want = direct_scores(truth, prediction, 6, 255)
    for key in want:
        assert abs(got[key] - want[key]) < 1e-12, key


def test_batch_averaging_would_differ():
    """The reason for one matrix: per-batch mIoU averaged is not the split's mIoU."""
    a_truth, a_pred = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 0, 0])
    b_truth, b_pred = torch.tensor([1, 1]), torch.tensor([1, 1])
    whole = ConfusionMatrix(2)
    whole.update(a_pred, a_truth)
    whole.update(b_pred, b_truth)
    per_batch = []
    for p, t in ((a_pred, a_truth), (b_pred, b_truth)):
        single = ConfusionMatrix(2)
        single.update(p, t)
        per_batch.append(single.compute()["miou"])
    assert abs(whole.compute()["miou"] - sum(per_batch) / 2) > 0.01
