"""A model on disk without pickle: its weights and the JSON spec that rebuilds it through the registry.

    <dir>/fusionlab-model.json  {"format": "fusionlab.model", "version": 1, "model": {task, name, backbone,
                                 num_classes, modalities, params}, "predictor": {the predictor's settings}}
    <dir>/weights.pt            ``torch.save`` of the model's state dict (tensors only), read with ``weights_only=True``

Loading builds the model with ``fusionlab.models.build`` from the spec, loads the weights strictly and wraps the model
in its task's predictor. Nothing else in the directory is read, so a pickle planted beside them (or in place of them)
is never run. Knows nothing of MLflow (``fusionlab.tracking.model_flavor`` logs and downloads these directories).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusionlab.errors import FusionlabError
from fusionlab.torch_files import TorchFileError, load_weights_only

from .fusion import FusionModel
from .predictor import SegmentationPredictor, TranslationPredictor
from .registry import BuildArgs, build
from .resnet import BackboneSpec

FORMAT = "fusionlab.model"
VERSION = 1
SPEC_FILE = "fusionlab-model.json"
WEIGHTS_FILE = "weights.pt"
PREDICTORS: dict[str, type[nn.Module]] = {"segmentation": SegmentationPredictor, "translation": TranslationPredictor}

Predictor = SegmentationPredictor | TranslationPredictor


class ModelFileError(FusionlabError):
    """A model directory that is not one fusionlab wrote, or whose spec and weights do not agree."""


def model_spec(predictor: Predictor) -> dict[str, Any]:
    """The JSON-able spec of ``predictor``: its model's ``build_args`` (set by ``fusionlab.models.build``) and its
    own settings."""
    args: BuildArgs | None = getattr(predictor.model, "build_args", None)
    if args is None:
        raise ModelFileError(f"cannot save a {type(predictor.model).__name__} that was not built by "
                             "fusionlab.models.build: without its build arguments it could not be rebuilt")
    if not isinstance(predictor, PREDICTORS[args.task]):
        raise ModelFileError(f"a {args.task} model is saved in a {PREDICTORS[args.task].__name__}, "
                             f"not a {type(predictor).__name__}")
    backbone = args.backbone
    if isinstance(backbone, BackboneSpec):
        backbone = {"layers": list(backbone.layers), "width": backbone.width,
                    "decoder_dims": list(backbone.decoder_dims)}
    spec = {"format": FORMAT, "version": VERSION,
            "model": {"task": args.task, "name": args.name, "backbone": backbone, "num_classes": args.num_classes,
                      "modalities": list(args.modalities), "params": args.params, "width": args.width},
            "predictor": predictor.settings()}
    try:
        json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"cannot save model {args.name!r}: its spec is not plain JSON ({error})") from None
    return spec


def save_model_dir(predictor: Predictor, directory: str | os.PathLike) -> Path:
    """Write ``predictor`` as weights plus spec into ``directory`` (created if needed). Each file is written to a
    temporary name and renamed; the spec comes last, so a directory with a spec is complete."""
    directory = Path(directory)
    spec = model_spec(predictor)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    state = {key: value.detach().cpu() for key, value in predictor.model.state_dict().items()}
    torch.save(state, weights.with_name(weights.name + ".partial"))
    os.replace(weights.with_name(weights.name + ".partial"), weights)
    path = directory / SPEC_FILE
    path.with_name(path.name + ".partial").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    os.replace(path.with_name(path.name + ".partial"), path)
    return directory


def load_model_dir(directory: str | os.PathLike, where: str | None = None) -> Predictor:
    """The predictor saved in ``directory``, rebuilt from its spec; ``where`` names it in errors (e.g. a model URI).
    The predictor is in eval mode, on the CPU."""
    directory = Path(directory)
    where = where or str(directory)
    spec = read_spec(directory, where)
    model = build_from_spec(spec["model"], f"{where}: {SPEC_FILE}")
    load_weights(model, directory / WEIGHTS_FILE, where)
    settings = spec.get("predictor") or {}
    if not isinstance(settings, dict):
        raise ModelFileError(f"{where}: {SPEC_FILE} field 'predictor' must be an object, got {settings!r}")
    try:
        predictor = PREDICTORS[spec["model"]["task"]](model, **settings)
    except Exception as error:
        raise ModelFileError(f"{where}: {SPEC_FILE} field 'predictor' is not a predictor's settings: {error}") from None
    return predictor.eval()


def read_spec(directory: Path, where: str) -> dict[str, Any]:
    path = directory / SPEC_FILE
    if not path.is_file():
        found = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        raise ModelFileError(f"{where} is not a fusionlab model: expected {SPEC_FILE} and {WEIGHTS_FILE} "
                             f"(weights plus the spec that rebuilds them), found {found or 'nothing'}. Models "
                             "saved as pickles (older fusionlab runs) are refused and never unpickled; retrain or "
                             "re-import the model to log it in this format")
    try:
        spec = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{where}: {SPEC_FILE} is not JSON: {error}") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        got = spec.get("format") if isinstance(spec, dict) else spec
        raise ModelFileError(f"{where}: {SPEC_FILE} field 'format' must be {FORMAT!r}, got {got!r}")
    if spec.get("version") != VERSION:
        raise ModelFileError(f"{where}: {SPEC_FILE} is {FORMAT} version {spec.get('version')!r}; this fusionlab "
                             f"reads version {VERSION}")
    if not isinstance(spec.get("model"), dict):
        raise ModelFileError(f"{where}: {SPEC_FILE} field 'model' must be an object, got {spec.get('model')!r}")
    return spec


def build_from_spec(model: dict[str, Any], where: str) -> FusionModel:
    """The model ``build`` makes from a spec's ``model`` object (untrained: the weights come next)."""
    missing = [key for key in ("task", "name", "num_classes", "modalities") if key not in model]
    if missing:
        raise ModelFileError(f"{where}: field 'model' has no {missing}")
    if model["task"] not in PREDICTORS:
        raise ModelFileError(f"{where}: field 'model.task' must be one of {list(PREDICTORS)}, got {model['task']!r}")
    backbone = model.get("backbone")
    params = model.get("params") or {}
    if not isinstance(params, dict):
        raise ModelFileError(f"{where}: field 'model.params' must be an object, got {params!r}")
    try:
        if isinstance(backbone, dict):
            backbone = BackboneSpec(tuple(backbone["layers"]), backbone.get("width", 64),
                                    tuple(backbone.get("decoder_dims", (512, 256, 256, 256))))
        return build(model["name"], backbone=backbone, num_classes=model["num_classes"],
                     modalities=model["modalities"], task=model["task"], width=model.get("width", 1.0), **params)
    except Exception as error:  # whatever a constructor raises on values no training run would have written
        raise ModelFileError(f"{where}: field 'model' does not build a model: {error}") from None


def load_weights(model: FusionModel, path: Path, where: str) -> None:
    if not path.is_file():
        raise ModelFileError(f"{where}: no {WEIGHTS_FILE} (the model's weights) beside {SPEC_FILE}")
    try:
        state = load_weights_only(path)
    except TorchFileError as error:  # a pickle with code in it, a truncated file, not a torch file at all
        raise ModelFileError(f"{where}: {WEIGHTS_FILE} is not a state dict of tensors (read with "
                             f"weights_only=True): {error.reason}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{where}: {WEIGHTS_FILE} must hold a state dict of tensors, got {type(state).__name__}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise ModelFileError(f"{where}: {WEIGHTS_FILE} does not fit the model {SPEC_FILE} describes: "
                             f"{detail[:1000]}") from None
