"""The estimate of a grid run: trial-epochs, training FLOPs and device-hours (assumptions: ``tune/grid.py``), and the
wall time of many runs on a number of devices at once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fusionlab.config import Config

from .grid_schema import GridError, GridRun


@dataclass(frozen=True)
class Estimate:
    trial_epochs: int
    train_flops: float  # the whole run: epochs × samples × flops_per_sample
    gpu_hours: float  # device-hours on grid.estimate's device (GPU unless estimate.kind is cpu)
    flops_per_sample: float  # one training step (forward + backward) per sample at the crop size
    train_samples: int
    samples_from: str  # "manifest", "data.synthesize" or "grid.train_samples"
    memory_bytes: int = 0  # one worker's step: weights, gradients, optimiser state, train.batch_size's activations


@dataclass(frozen=True)
class _DataFacts:
    train_samples: int
    samples_from: str
    num_classes: int
    crop: tuple[int, int]
    modalities: tuple[str, ...]


def _data_facts(run: GridRun) -> _DataFacts:
    from fusionlab.data import DatasetError, Manifest

    config, grid = run.config, run.grid
    data = config.data
    manifest = None
    if "://" not in data.path and (Path(data.path) / "manifest.json").is_file():
        try:
            manifest = Manifest.load(data.path)
        except DatasetError:
            manifest = None
    where = f"cell {run.label!r}"
    translation = is_translation(config)
    if manifest is not None:
        samples, samples_from = manifest.rows(data.train_split), "manifest"
        classes = manifest.label.num_classes if manifest.label else grid.num_classes
        if manifest.task == "translation":
            classes = manifest.modalities[manifest.target].channels
        size = data.crop or manifest.image_size
        modalities = data.modalities or [m for m in manifest.modalities if m != manifest.target]
    elif data.synthesize is not None:
        from fusionlab.data.synthetic import SYNTHETIC_CLASSES

        samples, samples_from = data.synthesize.train, "data.synthesize"
        classes, size = len(SYNTHETIC_CLASSES), data.crop or data.synthesize.size
        modalities = data.modalities or ["rgb", "depth"]
    else:
        samples, samples_from = grid.train_samples, "grid.train_samples"
        classes, size, modalities = grid.num_classes, data.crop, data.modalities
    if translation and manifest is None:
        classes = RGB_CHANNELS  # the translation target
    missing = [name for name, value in (("grid.train_samples", samples), ("grid.num_classes", classes),
                                         ("data.crop", size), ("data.modalities", modalities)) if not value]
    if missing:
        raise GridError(f"{where}: no dataset at {data.path} to read it from: set {', '.join(missing)} for the "
                        f"estimate")
    return _DataFacts(int(samples), samples_from, int(classes), (int(size[0]), int(size[1])), tuple(modalities))


RGB_CHANNELS = 3


def is_translation(config: Config) -> bool:
    from fusionlab.config.params import task_of

    return task_of(config.model.backbone) == "translation"


def estimate(run: GridRun) -> Estimate:
    """Trial-epochs, training FLOPs and device-hours of one run (see ``tune/grid.py``'s docstring for the
    assumptions)."""
    from fusionlab.models.flops import device_hours, sample_step_flops  # here: torch is slow to import
    from fusionlab.models.memory import sample_training_memory

    facts = _data_facts(run)
    model, train = run.config.model, run.config.train
    task = "translation" if is_translation(run.config) else "segmentation"
    built = (model.name, model.backbone, facts.num_classes, facts.modalities, facts.crop,
             json.dumps(model.build_kwargs(len(facts.modalities)), sort_keys=True), task)
    per_sample = sample_step_flops(*built)
    memory = sample_training_memory(*built).total_bytes(train.batch_size, train.optimizer)
    total = float(train.epochs) * facts.train_samples * per_sample
    spec = run.grid.estimate
    hours = device_hours(total, spec.peak_tflops, spec.mfu)
    return Estimate(train.epochs, total, hours, per_sample, facts.train_samples, facts.samples_from, memory)


def wall_hours(runs: list[GridRun], estimates: list[Estimate], devices: int) -> float:
    """The runs' wall time on ``devices`` devices at once: longest first (LPT list scheduling), each run on
    ``resources.num_workers`` devices for its device-hours / num_workers, starting when that many are free."""
    jobs = sorted(((e.gpu_hours / r.config.resources.num_workers, r.config.resources.num_workers)
                   for r, e in zip(runs, estimates, strict=True)), reverse=True)
    free = [0.0] * devices  # when each device is next free
    for hours, width in jobs:
        if width > devices:
            raise GridError(f"a run needs {width} devices (resources.num_workers), more than the {devices} given")
        free.sort()
        start = free[width - 1]
        free[:width] = [start + hours] * width
    return max(free)
