"""Declarative benchmark grids: the papers' tables as YAML, expanded into validated run configs.

A grid file has these top-level keys (unknown keys anywhere are errors that name the file and the key)::

    status: ready              # optional; "planned": see below
    anchors: {r152: &r152 {model.backbone: resnet152, train.epochs: 450}}   # optional, ignored: YAML anchors
    grid:
      name: nyudv2-refinenet   # the MLflow experiment of every run, and the folder grids/<name>: see fusionlab/names.py
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
the schema alone (``Config``: the dataset may live on another machine); errors name the file, the
cell label and the dotted key, or ``base`` when the base itself is at fault. The grid owns
``tracking.experiment`` (= ``grid.name``), ``tracking.run_name`` (= slug of the label + ``-seed<N>``) and
``train.seed`` (= each of ``grid.seeds``): setting them in ``base`` or a cell is an error. ``--set`` overrides
(``load_grid(path, overrides)``) apply to every cell last and may change anything. The paths a cell then names
(``config.paths.PATH_KEYS``: ``data.path``, ``model.pretrained``, ...) become absolute, from the current directory,
else from the grid file's where they are there; a launch checks the files exist before any trial starts.

``paper`` holds the published figures for the cell, in percent for ``pixel_acc``/``mean_acc``/``miou`` (translation:
``fid``, ``kid`` × 100), with the ``source`` they were read from (required). Omit it (or ``null``) where no published
figure exists; never type in a number that was not read from the source.

A launch may run part of a grid: ``fusionlab grid GRID --cells SLUG[,SLUG...] --seeds S[,S...]`` (``select``) names
cells by their slug (the label lower-cased, each run of other characters than a-z and 0-9 made one ``-``: "CEN,
ResNet-101" is ``cen-resnet-101``; a label without a comma may also be given as it is) and seeds among
``grid.seeds``; a name the grid does not have is refused with the file and the slugs it has. The dry-run then lists
and totals the chosen runs only; the launch trains only them and leaves the others as they stand
(``grid_runner.py``).

``status: planned`` marks a grid whose cells need features fusionlab does not have yet (e.g. the translation task):
its structure (grid/base/cells/paper) is validated, its cells are *not* validated as configs, and it cannot be
expanded into runs; ``print_dry_run`` still lists its cells and paper figures.

The estimate (``estimate(run)``, ``tune/grid_estimate.py``) is only an estimate: trial-epochs are ``train.epochs``;
the FLOPs of one training step (forward + backward, batch 1 at the training crop) are counted with
``torch.utils.flop_counter.FlopCounterMode`` (``fusionlab.models.flops``, as the benchmarks count them) on the meta
device (nothing allocated; if that fails, on a real batch at a small size, scaled by pixels), never typed in;
device-hours = epochs × training samples × FLOPs per sample / (peak TFLOP/s · 1e12 · MFU) / 3600. Validation,
data loading and checkpointing are not counted.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fusionlab.config import (
    Config,
    ConfigError,
    absolute_paths,
    apply_overrides,
    get_dotted,
    validation_error_lines,
)
from fusionlab.config.files import read_yaml_file
from fusionlab.train.prepare import parse_config

from .grid_dry_run import print_dry_run
from .grid_estimate import Estimate, estimate, is_translation, wall_hours
from .grid_schema import (
    GRID_OWNED_KEYS,
    CellSpec,
    EstimateSpec,
    Grid,
    GridError,
    GridFile,
    GridMeta,
    GridRun,
    PaperFigures,
    Selection,
    apply_set,
    slugify,
)


def load_grid(path: str | Path, overrides: list[str] | None = None) -> Grid:
    """Read and validate a grid file; every cell × seed becomes a validated ``Config`` (dataset not required)."""
    path = Path(path)
    try:
        raw = read_yaml_file(path, "grid")
    except ConfigError as error:
        raise GridError(str(error)) from None
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
    """The config's one line per key, a cell named by its label (``cells.3.paper.miou`` -> ``cell 'X': paper.miou``)."""
    cells = raw.get("cells") if isinstance(raw.get("cells"), list) else []

    def by_label(match: re.Match) -> str:
        index = int(match["index"])
        label = cells[index].get("label") if index < len(cells) and isinstance(cells[index], dict) else None
        head = f"cell {label!r}" if label else f"cells[{index}]"
        return f"  {head}: {match['rest']}" if match["rest"] else f"  {head}:"

    lines = [CELL_LOCATION.sub(by_label, line, count=1) for line in validation_error_lines(error)]
    return f"{path}: invalid grid\n" + "\n".join(lines)


CELL_LOCATION = re.compile(r"^  cells\.(?P<index>\d+)(?:\.(?P<rest>[^:]*))?:")


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
            expanded = apply_set({}, cell.set)
            if get_dotted(expanded, key)[0]:
                raise GridError(f"{path}: cell {cell.label!r}: {key}: set by the grid ({why[key]}); remove it")



def _cell_tree(spec: GridFile, cell: CellSpec, seed: int, path: Path, overrides: list[str]) -> dict[str, Any]:
    tree = apply_set(spec.base, cell.set)
    tree = apply_set(tree, {"tracking.experiment": spec.grid.name,
                            "tracking.run_name": f"{slugify(cell.label)}-seed{seed}", "train.seed": seed})
    tree = apply_overrides(tree, overrides)
    return absolute_paths(tree, path.parent)  # after the overrides: a --set path too


def _validate(tree: dict[str, Any]) -> Config | list[str]:
    """The cell's config (the schema alone: the dataset may live elsewhere), or its errors, one line per key."""
    try:
        return Config.model_validate(tree)
    except ValidationError as error:
        return [line.strip() for line in validation_error_lines(error)]


def _expand(spec: GridFile, path: Path, overrides: list[str]) -> list[GridRun]:
    runs: list[GridRun] = []
    failures: dict[str, list[str]] = {}
    for cell in spec.cells:
        paper = cell.paper.model_dump(exclude_none=True) if cell.paper else None
        for seed in spec.grid.seeds:
            tree = _cell_tree(spec, cell, seed, path, overrides)
            config = _validate(tree)
            if isinstance(config, list):
                failures[cell.label] = config
                break
            runs.append(GridRun(cell.label, seed, config, paper, tree, spec.grid))
    if not failures:
        names = [run.config.run_name() for run in runs]
        if len(set(names)) != len(names):  # only an override of tracking.run_name can do this
            raise GridError(f"{path}: tracking.run_name: every run needs its own name, got {sorted(set(names))} for "
                            f"{len(names)} runs (do not --set tracking.run_name on a grid)")
        return runs
    # Errors in the base show up in every cell: name the base once, then what is left per cell.
    base = _validate(_cell_tree(spec, CellSpec(label="base"), spec.grid.seeds[0], path, overrides))
    base_lines = [line for line in (base if isinstance(base, list) else [])
                  if all(line in lines for lines in failures.values()) and len(failures) == len(spec.cells)]
    set_keys = [item.partition("=")[0].strip() for item in overrides]

    def origin(line: str) -> str:  # a key given with --set is the override's fault, not the file's
        key = line.partition(":")[0]
        return "--set" if any(key == k or key.startswith(f"{k}.") for k in set_keys) else "base"

    report = [f"  {origin(line)}: {line}" for line in base_lines]
    for label, lines in failures.items():
        report += [f"  cell {label!r}: {line}" for line in lines if line not in base_lines]
    raise GridError(f"{path}: invalid grid\n" + "\n".join(report))


def select(grid: Grid, cells: list[str] | None = None, seeds: list[int] | None = None) -> Grid:
    """The grid with a launch's part of it chosen (``fusionlab grid --cells/--seeds``): ``cells`` names cells by slug
    (``slugify(label)``: "CEN, ResNet-101" is ``cen-resnet-101``) or by exact label, ``seeds`` are some of
    ``grid.seeds``; None (or empty) keeps all. A name or seed the grid does not have is refused, naming the file and
    listing what it has. The runs left out are neither trained nor touched (``grid_runner.run_grid``)."""
    chosen_cells = chosen_seeds = None
    if cells:
        slugs = {slugify(cell.label): cell.label for cell in grid.spec.cells}
        unknown = [name for name in cells if name not in slugs and name not in slugs.values()]
        if unknown:
            raise GridError(f"{grid.path}: --cells: no cell {', '.join(map(repr, unknown))} in grid "
                            f"{grid.name!r}; its cells (by slug): {', '.join(slugs)}")
        wanted = set(cells)
        chosen_cells = tuple(slug for slug, label in slugs.items() if slug in wanted or label in wanted)
    if seeds:
        have = grid.spec.grid.seeds
        unknown_seeds = [seed for seed in seeds if seed not in have]
        if unknown_seeds:
            raise GridError(f"{grid.path}: --seeds: no seed {', '.join(map(str, unknown_seeds))} in grid "
                            f"{grid.name!r}; its seeds (grid.seeds): {', '.join(map(str, have))}")
        chosen_seeds = tuple(seed for seed in have if seed in set(seeds))
    return dataclasses.replace(grid, selection=Selection(chosen_cells, chosen_seeds))


def run_tags(run: GridRun) -> dict[str, str]:
    """MLflow tags tying a run to its grid cell and the cell's published figures (``fusionlab report`` reads them)."""
    from fusionlab.tracking.tags import CELL_TAG, GRID_TAG, PAPER_TAG  # here: the tracking package imports mlflow

    tags = {GRID_TAG: run.grid.name, CELL_TAG: run.label}
    if run.paper:
        tags[PAPER_TAG] = json.dumps(run.paper, sort_keys=True)
    return tags


def prepare_run(run: GridRun) -> Config:
    """For a real run: validated, then prepared (the synthetic dataset written if the cell asks for one, the config
    checked against the dataset)."""
    return parse_config(run.tree, origin=f"cell {run.label!r} seed {run.seed}")



def is_grid_file(tree: Any) -> bool:
    """Grid files have a top-level ``grid`` key; anything else under experiments/ is a single run's config."""
    return isinstance(tree, dict) and "grid" in tree


__all__ = ["Estimate", "EstimateSpec", "Grid", "GridError", "GridFile", "GridMeta", "GridRun",
           "PaperFigures", "Selection", "estimate", "is_grid_file", "is_translation", "load_grid", "prepare_run",
           "print_dry_run", "run_tags", "select", "slugify", "wall_hours"]

