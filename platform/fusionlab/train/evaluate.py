"""Evaluate a logged or registered model on a dataset split: pixel acc, mean acc, mIoU of the ensemble
(segmentation), or FID, KID×100 and L1 of the ensemble's images (translation)."""

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


@torch.no_grad()
def evaluate_translation_model(predictor: torch.nn.Module, data: str | os.PathLike, split: str = "test",
                               batch_size: int = 8, device: torch.device | str = "cpu", features: str = "auto",
                               weights: str | None = None, kid_subsets: int = 100) -> dict[str, float | str]:
    """FID, KID×100 and L1 (in the generator's [-1, 1] range, as training logs it) of a ``TranslationPredictor``'s
    images against the split's targets; ``features`` names the extractor used (see ``fusionlab.fid``)."""
    from fusionlab.fid import frechet_distance, kernel_inception_distance, resolve_extractor

    from .translation import to_unit_range

    dataset = ShardDataset(data, split, select_modalities_for(predictor, data))
    manifest = dataset.manifest
    if manifest.task != "translation" or getattr(predictor, "target", None) is None:
        raise ValueError(f"dataset {data} is a {manifest.task} dataset; this model is not a translation model")
    extractor = resolve_extractor(features, weights)
    if isinstance(extractor, torch.nn.Module):
        extractor.to(device).eval()
    spec = manifest.modalities[manifest.target]
    predictor.eval()
    real_features, fake_features, l1_sum, count = [], [], 0.0, 0
    for batch in torch.utils.data.DataLoader(dataset, batch_size=batch_size if manifest.image_size else 1):
        generated = predictor(batch["image"].to(device)).float()
        real = to_unit_range(batch["target"].to(device), spec)
        l1_sum += float((2 * (generated - real)).abs().mean(dim=(1, 2, 3)).sum())
        count += real.shape[0]
        real_features.append(extractor.features(real).double().cpu())
        fake_features.append(extractor.features(generated).double().cpu())
    if count < 2:
        raise ValueError(f"split {split!r} of {data} has {count} sample(s); FID/KID need at least 2")
    real_all, fake_all = torch.cat(real_features), torch.cat(fake_features)
    kid, _ = kernel_inception_distance(real_all, fake_all, subsets=kid_subsets, subset_size=min(1000, count))
    return {"fid": frechet_distance(real_all, fake_all), "kid": 100.0 * kid, "l1": l1_sum / count,
            "features": extractor.name}
