"""Declarative benchmark grids: the papers' tables as YAML, expanded into validated run configs.

A grid file has these top-level keys (unknown keys anywhere are errors that name the file and the key)::

    status: ready              # optional; "planned": see below
    anchors: {r152: &r152 {model.backbone: resnet152, train.epochs: 450}}   # optional, ignored: YAML anchors
    grid:
      name: nyudv2-refinenet   # the MLflow experiment every run of the grid is tracked in
      description: ...         # optional, free text
      source: ...              # optional: where the grid's table comes from
      seeds: [0]               # every cell runs once per seed (train.seed); default [0]
      train_samples: 795       # training samples per epoch when data.path holds no dataset (for the estimate)
      num_classes: 40          # classes when data.path holds no dataset (for the FLOP count)
      estimate: {device: "NVIDIA A100 (bf16 dense)", kind: gpu, peak_tflops: 312, mfu: 0.3}
      max_concurrent: 8        # optional: cells × seeds training at once on Ray (default: all that fit)
    base:                      # a config tree (sections data, model, train, resources, tracking) shared by all cells
      data: {path: data/nyudv2, modalities: [rgb, depth], crop: [500, 500]}
      train: {...}
    cells:
      - label: "CEN · R101"    # unique; its slug (cen-r101) names the runs: cen-r101-seed0, ...
        set: {model.name: cen, model.backbone: resnet101}
        paper: {pixel_acc: 76.2, mean_acc: 62.8, miou: 51.1, source: "..."}   # or null / omitted

``set`` maps dotted config keys to values and is applied to a copy of ``base`` in order (a mapping value is merged
into the mapping already there, anything else replaces it). YAML anchors and merge keys (``<<: *r152``) work, so
shared per-backbone settings are written once. Each cell × seed is then validated as a full config with
``parse_config(..., require_data=False)`` (the dataset may live on another machine); errors name the file, the
cell label and the dotted key, or ``base`` when the base itself is at fault. The grid owns
``tracking.experiment`` (= ``grid.name``), ``tracking.run_name`` (= slug of the label + ``-seed<N>``) and
``train.seed`` (= each of ``grid.seeds``): setting them in ``base`` or a cell is an error. ``--set`` overrides
(``load_grid(path, overrides)``) apply to every cell last and may change anything.

``paper`` holds the published figures for the cell, in percent for ``pixel_acc``/``mean_acc``/``miou`` (translation:
``fid``, ``kid`` × 100), with the ``source`` they were read from (required). Omit it (or ``null``) where no published
figure exists; never type in a number that was not read from the source.

``status: planned`` marks a grid whose cells need features fusionlab does not have yet (e.g. the translation task):
its structure (grid/base/cells/paper) is validated, its cells are *not* validated as configs, and it cannot be
expanded into runs; ``print_dry_run`` still lists its cells and paper figures.

The estimate (``estimate(run)``) is only an estimate: trial-epochs are ``train.epochs``; the FLOPs of one training
step (forward + backward, batch 1 at the training crop) are counted with ``torch.utils.flop_counter.FlopCounterMode``
on the meta device (nothing allocated; if that fails, on a real batch at a small size, scaled by pixels), never typed
in; device-hours = epochs × training samples × FLOPs per sample / (peak TFLOP/s · 1e12 · MFU) / 3600. Validation,
data loading and checkpointing are not counted.
"""

from __future__ import annotations

import collections
import copy
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from fusionlab.config import (
    Config,
    ConfigError,
    Section,
    absolute_data_path,
    apply_overrides,
    create_synthetic_data,
    get_dotted,
    parse_config,
)

GRID_OWNED_KEYS = ("tracking.experiment", "tracking.run_name", "train.seed")
SEGMENTATION_FIGURES = ("pixel_acc", "mean_acc", "miou")
TRANSLATION_FIGURES = ("fid", "kid")


class GridError(ConfigError):
    """A bad grid file: the message names the file, the cell label and the dotted key."""


# --- the file's schema -------------------------------------------------------------------------------------------


class EstimateSpec(Section):
    """The device the estimate assumes: its peak dense TFLOP/s in the training precision and the achieved fraction."""

    device: str = "NVIDIA A100 (bf16 dense)"
    kind: Literal["gpu", "cpu"] = "gpu"
    peak_tflops: float = Field(312.0, gt=0)
    mfu: float = Field(0.3, gt=0, le=1)  # model FLOPs utilisation


class GridMeta(Section):
    name: str = Field(min_length=1)
    description: str | None = None
    source: str | None = None
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    train_samples: int | None = Field(None, ge=1)
    num_classes: int | None = Field(None, ge=2)
    estimate: EstimateSpec = EstimateSpec()
    # Cells × seeds training at once on Ray (default: every one the cluster fits; on a machine of its own, as many
    # as its cores hold).
    max_concurrent: int | None = Field(None, ge=1)

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"seeds must be distinct, got {value}")
        return value


class PaperFigures(Section):
    """Published figures for one cell: percent (segmentation) or FID / KID×100 (translation), and their source."""

    pixel_acc: float | None = Field(None, ge=0, le=100)
    mean_acc: float | None = Field(None, ge=0, le=100)
    miou: float | None = Field(None, ge=0, le=100)
    fid: float | None = Field(None, ge=0)
    kid: float | None = Field(None, ge=0)
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _some_figure(self) -> PaperFigures:
        if all(getattr(self, key) is None for key in (*SEGMENTATION_FIGURES, *TRANSLATION_FIGURES)):
            raise ValueError("paper needs at least one figure (pixel_acc, mean_acc, miou, fid, kid); write "
                             "`paper: null` where the paper gives none")
        return self


class CellSpec(Section):
    label: str = Field(min_length=1)
    set: dict[str, Any] = Field(default_factory=dict)
    paper: PaperFigures | None = None

    @field_validator("set")
    @classmethod
    def _dotted_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
                raise ValueError(f"set keys are dotted config keys like model.name, got {key!r}")
        return value


class GridFile(Section):
    status: Literal["ready", "planned"] = "ready"
    anchors: dict[str, Any] | None = None  # free-form and ignored: a place to define YAML anchors for the cells
    grid: GridMeta
    base: dict[str, Any] = Field(default_factory=dict)
    cells: list[CellSpec] = Field(min_length=1)


# --- the expanded grid -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridRun:
    """One cell × seed: a validated config, the paper's figures for the cell, and what the estimate needs."""

    label: str
    seed: int
    config: Config
    paper: dict[str, Any] | None
    tree: dict[str, Any] = field(repr=False)  # the expanded config tree (for prepare_run)
    grid: GridMeta = field(repr=False)


@dataclass(frozen=True)
class Grid:
    path: Path
    spec: GridFile
    runs: tuple[GridRun, ...]  # empty for a planned grid
    overrides: tuple[str, ...] = ()  # the --set items applied to every cell

    @property
    def name(self) -> str:
        return self.spec.grid.name

    @property
    def planned(self) -> bool:
        return self.spec.status == "planned"

    def cells_expanded(self) -> list[GridRun]:
        """Every cell × seed, in file order (a cell's seeds together)."""
        if self.planned:
            raise GridError(f"{self.path}: status is planned: its cells need features fusionlab does not have yet, "
                            f"so the grid cannot be run")
        return list(self.runs)


def slugify(label: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    return slug or "cell"


def load_grid(path: str | Path, overrides: list[str] | None = None) -> Grid:
    """Read and validate a grid file; every cell × seed becomes a validated ``Config`` (dataset not required)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise GridError(f"grid file not found: {path}") from None
    except yaml.YAMLError as error:
        raise GridError(f"{path}: invalid YAML ({error})") from None
    if not isinstance(raw, dict) or "grid" not in raw:
        raise GridError(f"{path}: not a grid file: expected top-level keys grid, base, cells (a single run's config "
                        f"goes to `fusionlab train`)")
    try:
        spec = GridFile.model_validate(raw)
    except ValidationError as error:
        raise GridError(_describe_grid_error(error, raw, path)) from None
    _check_labels(spec, path)
    if spec.status == "planned":
        return Grid(path, spec, (), tuple(overrides or ()))
    _check_owned_keys(spec, path)
    return Grid(path, spec, tuple(_expand(spec, path, overrides or [])), tuple(overrides or ()))


def _describe_grid_error(error: ValidationError, raw: dict[str, Any], path: Path) -> str:
    cells = raw.get("cells") if isinstance(raw.get("cells"), list) else []
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        if len(loc) >= 2 and loc[0] == "cells" and loc[1].isdigit():
            index = int(loc[1])
            label = cells[index].get("label") if index < len(cells) and isinstance(cells[index], dict) else None
            head = f"cell {label!r}" if label else f"cells[{index}]"
            loc = [f"{head}: {'.'.join(loc[2:])}" if loc[2:] else head]
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        shown = f" (got {item['input']!r})" if item["type"] not in ("missing", "extra_forbidden") else ""
        where = ".".join(loc) if loc else "(file)"
        lines.append(f"  {where}: {message}{shown}")
    return f"{path}: invalid grid\n" + "\n".join(lines)


def _check_labels(spec: GridFile, path: Path) -> None:
    seen: dict[str, str] = {}
    for cell in spec.cells:
        slug = slugify(cell.label)
        if slug in seen:
            what = "twice" if seen[slug] == cell.label else f"and {seen[slug]!r} (both name runs {slug!r})"
            raise GridError(f"{path}: cell {cell.label!r}: label: used {what}; labels must be unique")
        seen[slug] = cell.label


def _check_owned_keys(spec: GridFile, path: Path) -> None:
    why = {"tracking.experiment": "it is grid.name", "tracking.run_name": "it is derived from the cell label",
           "train.seed": "it is each of grid.seeds"}
    for key in GRID_OWNED_KEYS:
        if get_dotted(spec.base, key)[0]:
            raise GridError(f"{path}: base: {key}: set by the grid ({why[key]}); remove it")
        for cell in spec.cells:
            expanded = _apply_set({}, cell.set)
            if get_dotted(expanded, key)[0]:
                raise GridError(f"{path}: cell {cell.label!r}: {key}: set by the grid ({why[key]}); remove it")


def _merge(into: Any, value: Any) -> Any:
    if isinstance(into, dict) and isinstance(value, dict):
        merged = dict(into)
        for key, item in value.items():
            merged[key] = _merge(merged.get(key), item)
        return merged
    return copy.deepcopy(value)


def _apply_set(tree: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    tree = copy.deepcopy(tree)
    for key, value in values.items():
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = _merge(node.get(parts[-1]), value)
    return tree


def _cell_tree(spec: GridFile, cell: CellSpec, seed: int, path: Path, overrides: list[str]) -> dict[str, Any]:
    tree = _apply_set(spec.base, cell.set)
    tree = _apply_set(tree, {"tracking.experiment": spec.grid.name,
                             "tracking.run_name": f"{slugify(cell.label)}-seed{seed}", "train.seed": seed})
    tree = apply_overrides(tree, overrides)
    return absolute_data_path(tree, path.parent)


def _error_lines(error: ConfigError) -> list[str]:
    head, _, rest = str(error).partition("\n")
    if not rest:
        return [head.split(": ", 1)[-1]]
    return [line.strip() for line in rest.splitlines() if line.strip()]


def _expand(spec: GridFile, path: Path, overrides: list[str]) -> list[GridRun]:
    runs: list[GridRun] = []
    failures: dict[str, list[str]] = {}
    for cell in spec.cells:
        paper = cell.paper.model_dump(exclude_none=True) if cell.paper else None
        for seed in spec.grid.seeds:
            tree = _cell_tree(spec, cell, seed, path, overrides)
            try:
                config = parse_config(tree, origin=f"{path}: cell {cell.label!r}", require_data=False)
            except ConfigError as error:
                failures[cell.label] = _error_lines(error)
                break
            runs.append(GridRun(cell.label, seed, config, paper, tree, spec.grid))
    if not failures:
        names = [run.config.run_name() for run in runs]
        if len(set(names)) != len(names):  # only an override of tracking.run_name can do this
            raise GridError(f"{path}: tracking.run_name: every run needs its own name, got {sorted(set(names))} for "
                            f"{len(names)} runs (do not --set tracking.run_name on a grid)")
        return runs
    # Errors in the base show up in every cell: name the base once, then what is left per cell.
    base_lines: list[str] = []
    try:
        parse_config(_cell_tree(spec, CellSpec(label="base"), spec.grid.seeds[0], path, overrides),
                     origin=f"{path}: base", require_data=False)
    except ConfigError as error:
        base_lines = [line for line in _error_lines(error)
                      if all(line in lines for lines in failures.values()) and len(failures) == len(spec.cells)]
    set_keys = [item.partition("=")[0].strip() for item in overrides]

    def origin(line: str) -> str:  # a key given with --set is the override's fault, not the file's
        key = line.partition(":")[0]
        return "--set" if any(key == k or key.startswith(f"{k}.") for k in set_keys) else "base"

    report = [f"  {origin(line)}: {line}" for line in base_lines]
    for label, lines in failures.items():
        report += [f"  cell {label!r}: {line}" for line in lines if line not in base_lines]
    raise GridError(f"{path}: invalid grid\n" + "\n".join(report))


GRID_TAG, CELL_TAG, PAPER_TAG = "fusionlab.grid", "fusionlab.cell", "fusionlab.paper"


def run_tags(run: GridRun) -> dict[str, str]:
    """MLflow tags tying a run to its grid cell and the cell's published figures (``fusionlab report`` reads them)."""
    tags = {GRID_TAG: run.grid.name, CELL_TAG: run.label}
    if run.paper:
        tags[PAPER_TAG] = json.dumps(run.paper, sort_keys=True)
    return tags


def prepare_run(run: GridRun) -> Config:
    """For a real run: generate the synthetic dataset if the cell asks for one, then validate against the dataset."""
    create_synthetic_data(run.tree)
    return parse_config(run.tree, origin=f"cell {run.label!r} seed {run.seed}")


# --- the estimate -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    trial_epochs: int
    train_flops: float  # the whole run: epochs × samples × flops_per_sample
    gpu_hours: float  # device-hours on grid.estimate's device (GPU unless estimate.kind is cpu)
    flops_per_sample: float  # one training step (forward + backward) per sample at the crop size
    train_samples: int
    samples_from: str  # "manifest", "data.synthesize" or "grid.train_samples"


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
    from fusionlab.recipes import task_of

    return task_of(config.model.backbone) == "translation"


def estimate(run: GridRun) -> Estimate:
    """Trial-epochs, training FLOPs and device-hours of one run (see the module docstring for the assumptions)."""
    facts = _data_facts(run)
    model = run.config.model
    task = "translation" if is_translation(run.config) else "segmentation"
    per_sample = step_flops(model.name, model.backbone, facts.num_classes, facts.modalities, facts.crop,
                            json.dumps(model.build_kwargs(len(facts.modalities)), sort_keys=True), task)
    epochs = run.config.train.epochs
    total = float(epochs) * facts.train_samples * per_sample
    spec = run.grid.estimate
    hours = total / (spec.peak_tflops * 1e12 * spec.mfu) / 3600
    return Estimate(epochs, total, hours, per_sample, facts.train_samples, facts.samples_from)


def _count_step(name: str, backbone: str, num_classes: int, modalities: tuple[str, ...], size: tuple[int, int],
                kwargs: dict[str, Any], device: str, task: str = "segmentation") -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fusionlab.models import build

    with torch.device(device):
        model = build(name, backbone=backbone, num_classes=num_classes, modalities=list(modalities), task=task,
                      **kwargs)
        model.train()
        image = torch.randn(len(modalities), 1, 3, *size)
        with FlopCounterMode(display=False) as counter:
            output = model(image)
            loss = sum(branch.float().mean() for branch in output.branches) + output.ensemble.float().mean()
            loss = loss + model.regularization_loss()
            loss.backward()
    return float(counter.get_total_flops())


@functools.lru_cache(maxsize=256)
def step_flops(name: str, backbone: str, num_classes: int, modalities: tuple[str, ...], size: tuple[int, int],
               kwargs_json: str = "{}", task: str = "segmentation") -> float:
    """FLOPs of one training step (forward + backward) per sample at ``size``, counted, not typed in.

    Translation: the generator's step only (the PatchGAN discriminator's is not counted)."""
    kwargs = json.loads(kwargs_json)
    try:
        return _count_step(name, backbone, num_classes, modalities, size, kwargs, "meta", task)
    except Exception:  # noqa: BLE001 - an op without a meta kernel: count a real small batch and scale by pixels
        height, width = size
        scale = min(1.0, 128 / max(height, width))
        small = (max(32, round(height * scale / 32) * 32), max(32, round(width * scale / 32) * 32))
        flops = _count_step(name, backbone, num_classes, modalities, small, kwargs, "cpu", task)
        return flops * (height * width) / (small[0] * small[1])


# --- the dry run ----------------------------------------------------------------------------------------------------


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


def _figure(paper: dict[str, Any] | None, key: str) -> str:
    value = (paper or {}).get(key)
    if value is None:
        return "-"
    return f"{value:.2f}" if key == "kid" else f"{value:.1f}"


def _hours(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def _planned_rows(grid: Grid) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    return [(cell.label, _apply_set(grid.spec.base, cell.set),
             cell.paper.model_dump(exclude_none=True) if cell.paper else None) for cell in grid.spec.cells]


def print_dry_run(grid: Grid, console, states: dict[str, str] | None = None, devices: int | None = None
                  ) -> list[Estimate]:
    """Print the grid as a table (cells, paper figures, trial-epochs, estimated device-hours) with totals; with
    ``states`` (run name -> done, running, failed, killed, pending: ``grid_runner.cell_statuses``) a column says
    where each run stands in this workdir; with ``devices`` the caption estimates the grid's wall time on that many
    devices at once (``wall_hours``)."""
    from rich.markup import escape
    from rich.table import Table

    spec = grid.spec.grid
    papers = [cell.paper.model_dump(exclude_none=True) for cell in grid.spec.cells if cell.paper]
    sources: list[str] = []
    for paper in papers:
        if paper["source"] not in sources:
            sources.append(paper["source"])
    runs = [] if grid.planned else list(grid.cells_expanded())
    translation = (any(key in paper for paper in papers for key in TRANSLATION_FIGURES)
                   or any(is_translation(run.config) for run in runs))
    segmentation = not translation or any(key in paper for paper in papers for key in SEGMENTATION_FIGURES)
    unit = f"{spec.estimate.kind.upper()}-h"

    table = Table(title=f"grid {spec.name}: {len(grid.spec.cells)} cells × {len(spec.seeds)} seed(s)"
                  + (" — status: planned (not runnable yet)" if grid.planned else ""), title_justify="left")
    for header, justify in (("cell", "left"), ("model", "left"), ("backbone", "left"), ("modalities", "left"),
                            ("seed", "right")):
        table.add_column(header, justify=justify)
    if states is not None:
        table.add_column("state", justify="left")
    figure_keys = (list(SEGMENTATION_FIGURES) if segmentation else []) + (list(TRANSLATION_FIGURES)
                                                                           if translation else [])
    headers = {"pixel_acc": "paper pix acc", "mean_acc": "paper mean acc", "miou": "paper mIoU",
               "fid": "paper FID", "kid": "paper KID×100"}
    for key in figure_keys:
        table.add_column(headers[key], justify="right")
    table.add_column("src", justify="right")
    table.add_column("epochs", justify="right")
    table.add_column(unit, justify="right")

    def source_mark(paper: dict[str, Any] | None) -> str:
        return str(sources.index(paper["source"]) + 1) if paper else "-"

    estimates: list[Estimate] = []
    unestimated: list[str] = []
    if grid.planned:
        for label, tree, paper in _planned_rows(grid):
            model, data, train = tree.get("model", {}), tree.get("data", {}), tree.get("train", {})
            name = str(model.get("name", "cen"))
            if name == "unimodal" and model.get("modality"):
                name = f"unimodal ({model['modality']})"
            table.add_row(escape(label), name, str(model.get("backbone", "resnet_mini")),
                          "+".join(data.get("modalities") or []) or "-", ",".join(map(str, spec.seeds)),
                          *[_figure(paper, key) for key in figure_keys], source_mark(paper),
                          str(train.get("epochs", "-")), "-")
    else:
        for run in runs:
            config = run.config
            try:
                result = estimate(run)
            except GridError as error:  # e.g. no dataset here and no grid.train_samples: no estimate, say why
                result = None
                unestimated.append(str(error))
            else:
                estimates.append(result)
            name = config.model.name + (f" ({config.model.modality})" if config.model.modality else "")
            facts_modalities = "+".join(config.data.modalities) if config.data.modalities else "all"
            state = [states.get(config.run_name(), "pending")] if states is not None else []
            table.add_row(escape(run.label), name, config.model.backbone, facts_modalities, str(run.seed), *state,
                          *[_figure(run.paper, key) for key in figure_keys], source_mark(run.paper),
                          str(config.train.epochs), _hours(result.gpu_hours) if result else "-")
        table.add_section()
        blanks = [""] * (len(figure_keys) + 1)
        if states is not None:
            counts = collections.Counter(states.get(run.config.run_name(), "pending") for run in runs)
            blanks.insert(0, ", ".join(f"{count} {state}" for state, count in sorted(counts.items())))
        table.add_row(f"total: {len(runs)} runs", "", "", "", "", *blanks,
                      str(sum(run.config.train.epochs for run in runs)),
                      _hours(sum(e.gpu_hours for e in estimates)) if not unestimated else "-")

    caption = _caption(grid, estimates, unit, unestimated)
    if devices and estimates and not unestimated:
        plural = "s" if devices > 1 else ""
        caption += (f"\nOn {devices} device{plural} at once, as `fusionlab grid` schedules the runs: about "
                    f"{_hours(wall_hours(runs, estimates, devices))} h of wall time (ESTIMATE: the {unit} above, "
                    f"longest run first onto the devices that free first, each run on resources.num_workers of them).")
    table.caption = escape(caption)
    table.caption_justify = "left"
    console.print(table)
    for number, source in enumerate(sources, 1):
        console.print(escape(f"  [{number}] {source}"), highlight=False)
    if spec.source:
        console.print(escape(f"  grid: {spec.source}"), highlight=False)
    for line in _protocol_lines(runs):
        console.print(escape(line), highlight=False)
    return estimates


def _protocol_lines(runs: list[GridRun]) -> list[str]:
    """The recipe and selection every run follows (the runs listed where they differ)."""
    from fusionlab.recipes import recipe_label

    lines = []
    for what, describe in (("recipe", lambda c: recipe_label(c.flat())), ("selection", lambda c: c.train.selection)):
        groups: dict[str, list[str]] = {}
        for run in runs:
            groups.setdefault(describe(run.config), []).append(run.label)
        if len(groups) == 1:
            lines.append(f"  {what}: {next(iter(groups))} (every run)")
        else:
            lines += [f"  {what}: {value} ({', '.join(labels)})" for value, labels in groups.items()]
    return lines


def _caption(grid: Grid, estimates: list[Estimate], unit: str, unestimated: list[str] | None = None) -> str:
    spec = grid.spec.grid
    lines = ["Paper figures as published (percent, FID, KID×100; '-' = none published), source in [src] below."]
    if grid.planned:
        lines.append("Planned grid: its cells need features fusionlab does not have yet, so they are not validated "
                     "and nothing is estimated.")
        return "\n".join(lines)
    if unestimated:
        lines.append(f"{unit}: not estimated for {len(unestimated)} run(s): {unestimated[0]}.")
        if not estimates:
            return "\n".join(lines)
    origins = sorted({e.samples_from for e in estimates})
    samples = sorted({e.train_samples for e in estimates})
    device = spec.estimate
    lines.append(
        f"{unit} is an ESTIMATE: epochs × {'/'.join(map(str, samples))} training samples per epoch (from "
        f"{', '.join(origins)}) × FLOPs of one training step per sample (forward + backward at the training crop, "
        f"counted with torch FlopCounterMode: convolutions and matmuls only) / ({device.peak_tflops:g} TFLOP/s peak of "
        f"one {device.device} × MFU {device.mfu:g}). Validation, data loading, checkpoints and start-up are not "
        f"counted.")
    return "\n".join(lines)


def is_grid_file(tree: Any) -> bool:
    """Grid files have a top-level ``grid`` key; anything else under experiments/ is a single run's config."""
    return isinstance(tree, dict) and "grid" in tree


__all__ = ["CELL_TAG", "GRID_TAG", "PAPER_TAG", "Estimate", "EstimateSpec", "Grid", "GridError", "GridFile", "GridRun",
           "PaperFigures", "estimate", "is_grid_file", "load_grid", "prepare_run", "print_dry_run", "run_tags",
           "slugify", "step_flops"]
