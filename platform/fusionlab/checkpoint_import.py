"""``fusionlab import-checkpoint``: a CEN / AsymFusion reference checkpoint as a fusionlab model in the tracking store.

The checkpoint is read with ``weights_only=True``, every reference name is mapped (strictly: missing, unexpected and
mis-shaped keys are errors naming them) onto a model built with the reference recipe (the RefineNet RCU adding back
relu(x)), and the model is logged as an MLflow run that ``fusionlab evaluate``, ``predict``, ``report`` and
``promote`` use like a trained one. Scores are only logged for the splits asked for (``evaluate``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fusionlab.config.recipes import SWITCHES
from fusionlab.data import LabelSpec, Manifest, depth_mm_spec, rgb_spec
from fusionlab.errors import FusionlabError
from fusionlab.models import FusionModel, get_backbone
from fusionlab.models.params import CENParams, ModelParams
from fusionlab.models.reference_checkpoint import (
    REFERENCE_MODELS,
    ReferenceCheckpoint,
    load_reference_state,
    read_reference_checkpoint,
)
from fusionlab.models.registry import build_from_params, params_class
from fusionlab.models.resnet import BackboneSpec

RECIPE = "reference"
# The references keep the epoch with the best mIoU on their "val" list, which is NYUDv2's 654-image test split.
SELECTION = "best_test"
EVAL_UPSAMPLE = SWITCHES["model.eval_upsample"][RECIPE]  # the references score cv2.resize(INTER_CUBIC) logits
REFERENCE_THRESHOLD = CENParams.threshold  # yikaiw/CEN's segmentation bn_threshold


@dataclass
class ImportResult:
    run_id: str
    model_uri: str
    checkpoint: ReferenceCheckpoint
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)


def backbone_label(backbone: str | BackboneSpec) -> str:
    if isinstance(backbone, str):
        return backbone
    return "resnet-layers-" + "-".join(str(count) for count in backbone.layers)


def reference_inputs(num_classes: int) -> Manifest:
    """The references' inputs when no dataset is given: NYUDv2's RGB (ImageNet-normalised) and depth in mm x 1/5000,
    40 classes."""
    from fusionlab.data.converters.nyudv2 import IGNORE, NYU40_CLASSES

    if num_classes != len(NYU40_CLASSES):
        raise FusionlabError(f"without --data the model is logged for NYUDv2's {len(NYU40_CLASSES)} classes, but "
                             f"--num-classes is {num_classes}; give --data DIR (a dataset with {num_classes} classes)")
    return Manifest(name="nyudv2", task="segmentation", modalities={"rgb": rgb_spec(), "depth": depth_mm_spec()},
                    label=LabelSpec(NYU40_CLASSES, ignore_index=IGNORE), source={"note": "reference inputs"})


def _dataset(data: str | os.PathLike, num_classes: int, modalities: Sequence[str]) -> tuple[Manifest, list[str]]:
    manifest = Manifest.load(data)
    if manifest.task != "segmentation" or manifest.label is None:
        raise FusionlabError(f"--data {data} is a {manifest.task} dataset; a reference checkpoint is a segmenter")
    if manifest.label.num_classes != num_classes:
        raise FusionlabError(f"--data {data} has {manifest.label.num_classes} classes, --num-classes is {num_classes}")
    absent = [m for m in modalities if m not in manifest.modalities]
    if absent:
        raise FusionlabError(f"--data {data} has no modality {absent}; it has {list(manifest.modalities)}")
    notes = []
    for name, spec in {"rgb": rgb_spec(), "depth": depth_mm_spec()}.items():
        have = manifest.modalities.get(name)
        if name in modalities and have and (have.scale, have.mean, have.std) != (spec.scale, spec.mean, spec.std):
            notes.append(f"{data}: {name} is scaled {have.scale:g} (mean {have.mean}, std {have.std}); the references "
                         f"trained on {spec.scale:g} (mean {spec.mean}, std {spec.std})")
    return manifest, notes


def build_reference_model(name: str, backbone: str | BackboneSpec, num_classes: int, modalities: Sequence[str],
                          threshold: float = REFERENCE_THRESHOLD) -> FusionModel:
    """The fusionlab model a reference checkpoint loads into: the reference recipe's switches, eval mode."""
    if name not in REFERENCE_MODELS:
        raise FusionlabError(f"no reference checkpoint format for model {name!r}; expected one of {REFERENCE_MODELS}")
    params = reference_params(name, threshold)
    return build_from_params(name, params, backbone=backbone, num_classes=num_classes,
                             modalities=list(modalities)).eval()


def reference_params(name: str, threshold: float = REFERENCE_THRESHOLD) -> ModelParams:
    """The model's parameters under the reference recipe (its switches; CEN's ``threshold``)."""
    switches = {key.removeprefix("model.params."): values[RECIPE] for key, values in SWITCHES.items()
                if key.startswith("model.params.")}
    cls = params_class(name)
    values = {key: value for key, value in switches.items() if key in cls.config_keys()}
    if name == "cen":
        values["threshold"] = threshold
    return cls.from_config(values)


def model_params(name: str, model: FusionModel, backbone: str | BackboneSpec, checkpoint: ReferenceCheckpoint,
                 data: str | os.PathLike | None) -> dict[str, object]:
    spec = get_backbone(backbone)
    params: dict[str, object] = {
        "recipe": RECIPE, "model.name": name, "model.backbone": backbone_label(backbone),
        "model.layers": list(spec.layers), "model.num_classes": model.num_classes,
        "model.eval_upsample": EVAL_UPSAMPLE,
        "data.modalities": list(model.modalities),
        "data.path": str(data) if data is not None else None,
        "import.file": str(Path(checkpoint.path).resolve()), "import.sha256": checkpoint.sha256,
        "import.epoch_start": checkpoint.epoch_start, "import.best_val": checkpoint.best_val,
    }
    threshold = getattr(model, "threshold", REFERENCE_THRESHOLD)
    for key, value in reference_params(name, threshold).to_config().items():
        params[f"model.params.{key}"] = [list(v) for v in value] if key == "shift_offsets" else value
    return params


def import_checkpoint(name: str, path: str | os.PathLike, *, backbone: str | BackboneSpec, num_classes: int,
                      modalities: Sequence[str], tracking_uri: str, experiment: str, run_name: str | None = None,
                      data: str | os.PathLike | None = None, evaluate_splits: Sequence[str] = (),
                      threshold: float = REFERENCE_THRESHOLD,
                      artifact_root: str | os.PathLike | None = None) -> ImportResult:
    from fusionlab.inference.servable import servable
    from fusionlab.tracking.imports import log_imported_model, model_uri
    from fusionlab.train.evaluate import evaluate

    if evaluate_splits and data is None:
        raise FusionlabError("--evaluate needs --data (the dataset whose splits are scored)")
    manifest, notes = _dataset(data, num_classes, modalities) if data is not None else \
        (reference_inputs(num_classes), [])
    for split in evaluate_splits:
        manifest.shards(split)  # an unknown split fails before the model is built
    checkpoint = read_reference_checkpoint(path)
    model = build_reference_model(name, backbone, num_classes, modalities, threshold)
    load_reference_state(model, checkpoint.state, str(path), get_backbone(backbone))
    predictor = servable(model, manifest, EVAL_UPSAMPLE)
    metrics = {}
    for split in evaluate_splits:
        scores = evaluate(predictor, data, split)
        metrics.update({f"{split}/{key}": value for key, value in scores.items()})
    run_name = run_name or f"{name}-{backbone_label(backbone)}-reference-{checkpoint.sha256[:8]}"
    run_id = log_imported_model(tracking_uri, experiment, run_name, model, manifest, predictor=predictor,
                                params=model_params(name, model, backbone, checkpoint, data), source=str(path),
                                sha256=checkpoint.sha256, recipe=RECIPE, selection=SELECTION, metrics=metrics,
                                dataset_known=data is not None, artifact_root=artifact_root)
    return ImportResult(run_id, model_uri(run_id), checkpoint, metrics, notes)
