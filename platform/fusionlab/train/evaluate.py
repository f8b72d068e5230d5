"""Evaluate a logged or registered model on a dataset split: pixel acc, mean acc, mIoU of the ensemble
(segmentation), or FID, KID×100 and L1 of the ensemble's images (translation)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from fusionlab.data import DatasetError, Manifest
from fusionlab.data.torch_dataset import ShardDataset
from fusionlab.data.transforms import select_modalities
from fusionlab.errors import FusionlabError
from fusionlab.inference.inputs import check_input_specs
from fusionlab.models.multiscale import SINGLE_SCALE, MultiScalePredictor, is_single_scale

from .metrics import ConfusionMatrix


@torch.no_grad()
def evaluate(predictor: torch.nn.Module, data: str | os.PathLike, split: str = "test", batch_size: int = 8,
             device: torch.device | str = "cpu", *, features: str = "auto", weights: str | None = None,
             kid_subsets: int = 100, scales: Sequence[float] = SINGLE_SCALE,
             flip: bool = False) -> dict[str, float | str]:
    """The ensemble's scores on ``split`` of the dataset at ``data``, by the predictor's task: ``pixel_acc``,
    ``mean_acc``, ``miou`` (a ``SegmentationPredictor``; ``scales`` and ``flip``: its logits averaged over those
    input scales and mirror images, ``models/multiscale.py``), or ``fid``, ``kid`` (x100), ``l1`` and the
    ``features`` they were computed with (a ``TranslationPredictor``; ``features``, ``weights`` and ``kid_subsets``
    choose how: see ``fusionlab.fid``)."""
    manifest = check_dataset_for(predictor, data)
    if manifest.task != predictor.task:
        raise DatasetError(f"dataset {data} is a {manifest.task} dataset; this model is a {predictor.task} model")
    if predictor.task == "translation":
        if not is_single_scale(scales, flip):
            raise FusionlabError("multi-scale and flip evaluation (--scales, --flip) is for segmentation models; a "
                                 "translation model is scored on its images as generated")
        return translation_scores(predictor, data, manifest, split, batch_size, device, features=features,
                                  weights=weights, kid_subsets=kid_subsets)
    if not is_single_scale(scales, flip):
        predictor = MultiScalePredictor(predictor, scales, flip)
    return segmentation_scores(predictor, data, manifest, split, batch_size, device)


def segmentation_scores(predictor: torch.nn.Module, data: str | os.PathLike, manifest: Manifest, split: str,
                        batch_size: int, device: torch.device | str) -> dict[str, float]:
    label = manifest.label
    if label is None or label.num_classes != predictor.num_classes:
        raise DatasetError(f"{data}: the dataset has {label.num_classes if label else 0} classes, the model predicts "
                           f"{predictor.num_classes}; evaluate it on a dataset with the classes it was trained on")
    dataset = ShardDataset(data, split, select_modalities(manifest, predictor.modalities))
    size = batch_size if manifest.image_size else 1
    matrix = ConfusionMatrix(label.num_classes, label.ignore_index, device)
    predictor.eval()
    for batch in torch.utils.data.DataLoader(dataset, batch_size=size):
        matrix.update(predictor(batch["image"].to(device)).argmax(1), batch["label"].to(device))
    return matrix.compute()


def check_dataset_for(predictor: torch.nn.Module, data: str | os.PathLike) -> Manifest:
    """The dataset's manifest, once its inputs are checked against the model's (as ``predict`` checks them)."""
    manifest = Manifest.load(data)
    check_input_specs(data, manifest, predictor)
    return manifest


def translation_scores(predictor: torch.nn.Module, data: str | os.PathLike, manifest: Manifest, split: str,
                       batch_size: int, device: torch.device | str, *, features: str, weights: str | None,
                       kid_subsets: int) -> dict[str, float | str]:
    """FID, KID×100 and L1 (in the generator's [-1, 1] range, as training logs it) of a ``TranslationPredictor``'s
    images against the split's targets; ``features`` names the extractor used (see ``fusionlab.fid``)."""
    from fusionlab.config import FidConfig
    from fusionlab.fid import resolve_extractor

    from .translation import evaluate_translation

    dataset = ShardDataset(data, split, select_modalities(manifest, predictor.modalities))
    if len(dataset) < 2:
        raise DatasetError(f"split {split!r} of {data} has {len(dataset)} sample(s); FID/KID need at least 2")
    extractor = resolve_extractor(features, weights)
    if isinstance(extractor, torch.nn.Module):
        extractor.to(device).eval()
    batches = torch.utils.data.DataLoader(dataset, batch_size=batch_size if manifest.image_size else 1)
    metrics, _ = evaluate_translation(predictor.model.to(device), batches, FidConfig(kid_subsets=kid_subsets),
                                      torch.device(device), manifest, list(predictor.modalities), extractor,
                                      gather=lambda tensor: tensor, prefix=split)
    return {**{key: metrics[f"{split}/{key}"] for key in ("fid", "kid", "l1")}, "features": extractor.name}
