"""A small MLflow store shaped like a grid's and a sweep's, written directly (no training) for the report tests.

Runs carry the tags, params and metrics the training loop writes (segmentation, or translation with
``fusionlab.fid_features``); the CEN runs also get a real (untrained) resnet_mini or unet_mini model logged, so the
report can draw its gamma and exchange plots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from mlflow.tracking import MlflowClient

from fusionlab.data.manifest import LabelSpec, Manifest, depth_mm_spec, rgb_spec
from fusionlab.fid import INCEPTION_NAME, LOCAL_NAME
from fusionlab.inference.servable import servable, translation_servable
from fusionlab.models import build
from fusionlab.models.flops import model_sample_flops
from fusionlab.tracking import default_tracking_uri, ensure_experiment
from fusionlab.tracking.runs import KIND_TAG, RunTracker

PAPER = {"pixel_acc": 76.2, "mean_acc": 62.8, "miou": 51.1, "source": "CEN official README (fixture)"}
PAPER_TRANSLATION = {"fid": 96.4, "kid": 1.73, "source": "CEN paper, translation table (fixture)"}
TRANSLATION_INPUTS = ["depth", "normal"]  # -> rgb


@dataclass(frozen=True)
class FixtureRun:
    cell: str | None
    model: str
    seed: int
    scores: dict[str, float]  # split/metric -> fraction
    modality: str | None = None
    paper: dict | None = None
    params: dict | None = None
    status: str = "FINISHED"
    tags: dict | None = None
    task: str = "segmentation"


def manifest() -> Manifest:
    return Manifest(name="fixture-rgbd", task="segmentation", modalities={"rgb": rgb_spec(), "depth": depth_mm_spec()},
                    label=LabelSpec(classes=tuple(f"c{k}" for k in range(5))), splits={}, image_size=(32, 32))


def translation_manifest() -> Manifest:
    return Manifest(name="fixture-translation", task="translation", target="rgb", splits={}, image_size=(32, 32),
                    modalities={name: rgb_spec() for name in [*TRANSLATION_INPUTS, "rgb"]})


def scores(test_miou: float, val_miou: float | None = None) -> dict[str, float]:
    values = {"test/miou": test_miou, "test/pixel_acc": test_miou + 0.3, "test/mean_acc": test_miou + 0.1}
    if val_miou is not None:
        values.update({"val/miou": val_miou, "val/pixel_acc": val_miou + 0.3, "val/mean_acc": val_miou + 0.1})
    return values


def translation_scores(test_fid: float | None, val_fid: float) -> dict[str, float]:
    """FID, KID×100 and L1 as the translation loop logs them, for the ensemble and (worse) per branch."""
    values = {}
    for split, fid in (("test", test_fid), ("val", val_fid)):
        if fid is not None:
            values.update({f"{split}/fid": fid, f"{split}/kid": fid / 50, f"{split}/l1": 0.1 + fid / 1000,
                           f"{split}/depth/fid": fid + 7.0, f"{split}/depth/kid": fid / 40})
    return values


def translation_runs(fid_features: str = LOCAL_NAME) -> list[FixtureRun]:
    """A unimodal, an early-fusion and a CEN cell (CEN with published figures): CEN beats the unimodal row, concat
    does not."""
    tags = {"fusionlab.fid_features": fid_features}
    return [FixtureRun("Depth only", "unimodal", 0, translation_scores(120.5, 118.0), modality="depth",
                       task="translation", tags=tags),
            FixtureRun("Concat", "concat", 0, translation_scores(131.25, 129.0), task="translation", tags=tags),
            FixtureRun("CEN", "cen", 0, translation_scores(101.75, 99.5), paper=PAPER_TRANSLATION,
                       task="translation", tags=tags)]


TRANSLATION_LOCAL_RUNS = translation_runs(LOCAL_NAME)
TRANSLATION_INCEPTION_RUNS = translation_runs(INCEPTION_NAME)

GRID_RUNS = [
    FixtureRun("RGB only", "unimodal", 0, scores(0.30, 0.31), modality="rgb"),
    FixtureRun("RGB only", "unimodal", 1, scores(0.34, 0.33), modality="rgb"),
    FixtureRun("Depth only", "unimodal", 0, scores(0.40, 0.41), modality="depth"),
    FixtureRun("Depth only", "unimodal", 1, scores(0.42, 0.40), modality="depth"),
    FixtureRun("CEN", "cen", 0, scores(0.55, 0.50), paper=PAPER),
    FixtureRun("CEN", "cen", 1, scores(0.59, 0.52), paper=PAPER),
]


def write_store(workdir, experiment: str, runs: list[FixtureRun], parent_kind: str | None = "grid") -> dict:
    """Write the runs (children of one parent run of ``parent_kind``); returns ids by (cell or index, seed)."""
    uri = default_tracking_uri(workdir)
    client = MlflowClient(uri)
    experiment_id = ensure_experiment(uri, experiment, workdir / "mlartifacts")
    parent = None
    if parent_kind:
        parent = client.create_run(experiment_id, run_name=f"{parent_kind}-{experiment}",
                                   tags={KIND_TAG: parent_kind}).info.run_id
    ids = {"parent": parent}
    for index, spec in enumerate(runs):
        name = f"{(spec.cell or spec.model).lower().replace(' ', '-')}-{index}-seed{spec.seed}"
        translation = spec.task == "translation"
        backbone = "unet_mini" if translation else "resnet_mini"
        inputs = TRANSLATION_INPUTS if translation else ["rgb", "depth"]
        model = build(spec.model, backbone=backbone, num_classes=3 if translation else 5, task=spec.task,
                      modalities=inputs if spec.model != "unimodal" else [spec.modality],
                      **({"modality": spec.modality} if spec.modality else {}))
        tags = {KIND_TAG: "train", "fusionlab.run_key": name, "fusionlab.model": spec.model,
                "fusionlab.dataset": "fixture-translation" if translation else "fixture-rgbd",
                "fusionlab.task": spec.task,
                "fusionlab.manifest_sha256": "0" * 64, "fusionlab.modalities": ",".join(model.modalities),
                "fusionlab.parameters": str(sum(p.numel() for p in model.parameters())),
                "fusionlab.flops": str(round(model_sample_flops(model, (32, 32)))), **(spec.tags or {})}
        if spec.cell:
            tags.update({"fusionlab.grid": experiment, "fusionlab.cell": spec.cell})
        if spec.paper:
            tags["fusionlab.paper"] = json.dumps(spec.paper)
        if parent:
            tags["mlflow.parentRunId"] = parent
        run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        params = {"model.name": spec.model, "model.backbone": backbone, "model.params.modality": spec.modality,
                  "train.seed": spec.seed, **(spec.params or {})}
        for key, value in params.items():
            client.log_param(run_id, key, value)
        for key, value in spec.scores.items():
            client.log_metric(run_id, key, value, step=0)
        client.log_metric(run_id, "train/loss", 1.0, step=0)  # one epoch
        if spec.model == "cen":
            torch.manual_seed(index)
            tracker = RunTracker(client, run_id, set())
            if translation:
                tracker.log_model(translation_servable(model, translation_manifest()))
            else:
                tracker.log_model(servable(model, manifest()))
        client.set_terminated(run_id, status=spec.status)
        ids[(spec.cell or index, spec.seed)] = run_id
    if parent:
        client.set_terminated(parent)
    return ids
