"""The dry run of a grid: its cells, the papers' figures, trial-epochs and estimated device-hours as one table."""

from __future__ import annotations

import collections
from typing import Any

from .grid_estimate import Estimate, estimate, is_translation, wall_hours
from .grid_schema import SEGMENTATION_FIGURES, TRANSLATION_FIGURES, Grid, GridError, GridRun, apply_set


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
    return [(cell.label, apply_set(grid.spec.base, cell.set),
             cell.paper.model_dump(exclude_none=True) if cell.paper else None)
            for cell in grid.spec.cells if grid.selection.includes(cell.label)]


def print_dry_run(grid: Grid, console, states: dict[str, str] | None = None, devices: int | None = None
                  ) -> list[Estimate]:
    """Print the grid as a table (cells, paper figures, trial-epochs, estimated device-hours) with totals; with
    ``states`` (run name -> done, running, failed, killed, pending: ``grid_runner.cell_statuses``) a column says
    where each run stands in this workdir; with ``devices`` the caption estimates the grid's wall time on that many
    devices at once (``wall_hours``). A grid with a selection (``tune.grid.select``) lists only the runs chosen, and
    its totals and wall time are theirs; a line says how many of the grid's runs they are."""
    from rich.markup import escape
    from rich.table import Table

    spec = grid.spec.grid
    papers = [cell.paper.model_dump(exclude_none=True) for cell in grid.spec.cells
              if cell.paper and grid.selection.includes(cell.label)]
    sources: list[str] = []
    protocols: dict[str, str] = {}  # source -> " (single-scale)" where its cells say how the figure was scored
    for paper in papers:
        if paper["source"] not in sources:
            sources.append(paper["source"])
        if "protocol" in paper:
            protocols[paper["source"]] = f" ({paper['protocol']})"
    runs = [] if grid.planned else grid.chosen()
    translation = (any(key in paper for paper in papers for key in TRANSLATION_FIGURES)
                   or any(is_translation(run.config) for run in runs))
    segmentation = not translation or any(key in paper for paper in papers for key in SEGMENTATION_FIGURES)
    unit = f"{spec.estimate.kind.upper()}-h"

    title = f"grid {spec.name}: {len(grid.spec.cells)} cells × {len(spec.seeds)} seed(s)"
    if not grid.selection.everything:  # the part a launch runs: N of M runs: --cells ...
        chosen, every = ((len(_planned_rows(grid)), len(grid.spec.cells)) if grid.planned
                         else (len(runs), len(grid.runs)))
        title += f"; {chosen} of {every} {'cells' if grid.planned else 'runs'}: {grid.selection.describe()}"
    table = Table(title=escape(title + (" — status: planned (not runnable yet)" if grid.planned else "")),
                  title_justify="left")
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
    table.add_column("GiB/worker", justify="right")

    def source_mark(paper: dict[str, Any] | None) -> str:
        return str(sources.index(paper["source"]) + 1) if paper else "-"

    estimates: list[Estimate] = []
    unestimated: list[str] = []
    if grid.planned:
        for label, tree, paper in _planned_rows(grid):
            model, data, train = tree.get("model", {}), tree.get("data", {}), tree.get("train", {})
            name = str(model.get("name", "cen"))
            modality = (model.get("params") or {}).get("modality")
            if name == "unimodal" and modality:
                name = f"unimodal ({modality})"
            table.add_row(escape(label), name, str(model.get("backbone", "resnet_mini")),
                          "+".join(data.get("modalities") or []) or "-",
                          ",".join(map(str, grid.selection.seeds or spec.seeds)),
                          *[_figure(paper, key) for key in figure_keys], source_mark(paper),
                          str(train.get("epochs", "-")), "-", "-")
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
            modality = config.model.params.get("modality")
            name = config.model.name + (f" ({modality})" if modality else "")
            facts_modalities = "+".join(config.data.modalities) if config.data.modalities else "all"
            state = [states.get(config.run_name(), "pending")] if states is not None else []
            table.add_row(escape(run.label), name, config.model.backbone, facts_modalities, str(run.seed), *state,
                          *[_figure(run.paper, key) for key in figure_keys], source_mark(run.paper),
                          str(config.train.epochs), _hours(result.gpu_hours) if result else "-",
                          _gib(result.memory_bytes) if result else "-")
        table.add_section()
        blanks = [""] * (len(figure_keys) + 1)
        if states is not None:
            counts = collections.Counter(states.get(run.config.run_name(), "pending") for run in runs)
            blanks.insert(0, ", ".join(f"{count} {state}" for state, count in sorted(counts.items())))
        table.add_row(f"total: {len(runs)} runs", "", "", "", "", *blanks,
                      str(sum(run.config.train.epochs for run in runs)),
                      _hours(sum(e.gpu_hours for e in estimates)) if not unestimated else "-",
                      _gib(max((e.memory_bytes for e in estimates), default=0)) if estimates else "-")

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
        console.print(escape(f"  [{number}] {source}{protocols.get(source, '')}"), highlight=False)
    if spec.source:
        console.print(escape(f"  grid: {spec.source}"), highlight=False)
    for line in _protocol_lines(runs):
        console.print(escape(line), highlight=False)
    _print_missing_files(runs, console)
    return estimates


def _print_missing_files(runs: list[GridRun], console) -> None:
    """A plan made on a laptop lists the files its runs name that are not here; a launch here would refuse them."""
    from rich.markup import escape

    from fusionlab.config import missing_files

    missing = missing_files(*(run.config for run in runs))
    if missing:
        console.print("[yellow]not on this machine[/] (a launch here refuses to start until they are):",
                      highlight=False)
    for line in missing:
        console.print(escape(f"  {line}"), highlight=False, soft_wrap=True)


def _protocol_lines(runs: list[GridRun]) -> list[str]:
    """The recipe, selection and scoring every run follows (the runs listed where they differ)."""
    from fusionlab.config.recipes import recipe_label
    from fusionlab.models.multiscale import SINGLE_SCALE_LABEL, protocol_label

    def scoring(config) -> str:
        label = protocol_label(config.model.eval_scales, config.model.eval_flip)
        return label if label == SINGLE_SCALE_LABEL else f"{SINGLE_SCALE_LABEL} and {label}"

    lines = []
    for what, describe in (("recipe", lambda c: recipe_label(c.flat())), ("selection", lambda c: c.train.selection),
                           ("scored", scoring)):
        groups: dict[str, list[str]] = {}
        for run in runs:
            groups.setdefault(describe(run.config), []).append(run.label)
        if len(groups) == 1:
            lines.append(f"  {what}: {next(iter(groups))} (every run)")
        else:
            lines += [f"  {what}: {value} ({', '.join(labels)})" for value, labels in groups.items()]
    return lines


def _gib(memory_bytes: int) -> str:
    return f"{memory_bytes / 2**30:.1f}" if memory_bytes else "-"


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
    lines.append(
        "GiB/worker is an ESTIMATE of one worker's training step (the total: the largest run's): fp32 weights, "
        "gradients and optimiser state, plus the activations autograd keeps for backward at train.batch_size and the "
        "training crop (fp32; bf16 autocast, train.amp, about halves them), counted on the meta device. Backward "
        "temporaries, cuDNN workspaces and the CUDA context come on top: leave headroom.")
    return "\n".join(lines)
