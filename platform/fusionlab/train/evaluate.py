"""Evaluate a logged or registered model on a dataset split (pixel acc, mean acc, mIoU of the ensemble)."""

from __future__ import annotations

import os

import torch

from fusionlab.data.torch_dataset import ShardDataset
from fusionlab.data.transforms import select_modalities

from .metrics import ConfusionMatrix


@torch.no_grad()
def evaluate(predictor: torch.nn.Module, data: str | os.PathLike, split: str = "test",
             batch_size: int = 8, device: torch.device | str = "cpu") -> dict[str, float]:
    dataset = ShardDataset(data, split, select_modalities_for(predictor, data))
    label = dataset.manifest.label
    if label is None or label.num_classes != predictor.num_classes:
        raise ValueError(f"dataset {data} has {label.num_classes if label else 0} classes, the model predicts "
                         f"{predictor.num_classes}")
    size = batch_size if dataset.manifest.image_size else 1
    matrix = ConfusionMatrix(label.num_classes, label.ignore_index, device)
    predictor.eval()
    for batch in torch.utils.data.DataLoader(dataset, batch_size=size):
        matrix.update(predictor(batch["image"].to(device)).argmax(1), batch["label"].to(device))
    return matrix.compute()


def select_modalities_for(predictor: torch.nn.Module, data: str | os.PathLike) -> list[str]:
    from fusionlab.data import Manifest

    return select_modalities(Manifest.load(data), predictor.modalities)
