"""A grid file's schema (``grid``, ``base``, ``cells``: see ``tune/grid.py`` for the format) and the expanded grid."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from fusionlab.config import Config, ConfigError, Section, get_dotted, set_dotted
from fusionlab.names import name_problem

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
    name: str = Field(min_length=1)  # the grid's MLflow experiment and its folder WORKDIR/grids/<name>
    description: str | None = None
    source: str | None = None
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    train_samples: int | None = Field(None, ge=1)
    num_classes: int | None = Field(None, ge=2)
    estimate: EstimateSpec = EstimateSpec()
    # Cells × seeds training at once on Ray (default: every one the cluster fits; on a machine of its own, as many
    # as its cores hold).
    max_concurrent: int | None = Field(None, ge=1)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:  # WORKDIR/grids/<name>: a name, not a path (fusionlab/names.py)
        problem = name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

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
    # Segmentation: how the published figure was scored (single- or multi-scale); None where the source does not say.
    # The report sets it beside how ours were (model.eval_scales, fusionlab report --protocol).
    protocol: Literal["single-scale", "multi-scale"] | None = None

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
class Selection:
    """The part of a grid one launch runs (``fusionlab grid --cells/--seeds``, ``tune.grid.select``): cells by slug
    and seeds, each None for all of them."""

    cells: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None

    @property
    def everything(self) -> bool:
        return self.cells is None and self.seeds is None

    def includes(self, label: str, seed: int | None = None) -> bool:
        return ((self.cells is None or slugify(label) in self.cells)
                and (seed is None or self.seeds is None or seed in self.seeds))

    def describe(self) -> str:
        """As it was asked for: ``--cells cen-resnet-101 --seeds 0``; ``every run`` for no selection."""
        parts = ([f"--cells {','.join(self.cells)}"] if self.cells is not None else []) + (
            [f"--seeds {','.join(map(str, self.seeds))}"] if self.seeds is not None else [])
        return " ".join(parts) or "every run"


@dataclass(frozen=True)
class Grid:
    path: Path
    spec: GridFile
    runs: tuple[GridRun, ...]  # empty for a planned grid
    overrides: tuple[str, ...] = ()  # the --set items applied to every cell
    selection: Selection = Selection()  # what a launch runs of it: every run unless --cells / --seeds

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

    def chosen(self) -> list[GridRun]:
        """The runs of ``selection`` (every cell × seed without one), in file order."""
        return [run for run in self.cells_expanded() if self.selection.includes(run.label, run.seed)]


def slugify(label: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    return slug or "cell"



def _merge(into: Any, value: Any) -> Any:
    if isinstance(into, dict) and isinstance(value, dict):
        merged = dict(into)
        for key, item in value.items():
            merged[key] = _merge(merged.get(key), item)
        return merged
    return copy.deepcopy(value)


def apply_set(tree: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``tree`` with a cell's ``set`` applied in order: a mapping value is merged into the mapping already
    at its dotted key, anything else replaces what is there."""
    tree = copy.deepcopy(tree)
    for key, value in values.items():
        tree = set_dotted(tree, key, _merge(get_dotted(tree, key)[1], value))
    return tree
