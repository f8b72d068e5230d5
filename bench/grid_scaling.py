"""Grid scaling on one machine: a grid's cells one at a time vs at once, and a Ray epoch vs the same epoch in-process.

    python bench/grid_scaling.py                         # defaults: 4 cells, 4 epochs, 32 train scenes at 96x128
    python bench/grid_scaling.py --epochs 6 --train 64 --repeats 2

A ``ray.cluster_utils.Cluster`` on this machine: a head (the trial drivers' ``tune_driver`` resource, ``--head-cpus``
CPUs for Ray Data's read/decode tasks, never a training worker) and two worker nodes, each offering one ``slot`` (a
custom resource standing in for a GPU) and one CPU. The 4-cell grid (unimodal RGB, late fusion, shared BN, CEN on
resnet_mini) asks for one slot per cell (``resources.worker_resources``), so its cells train on one thread each and
at most two at once. Rounds alternate within one run on one machine:

1. **sequential**: the grid with ``grid.max_concurrent: 1`` (cells one after another, in one Ray session);
2. **concurrent**: the same grid two at a time (``grid.max_concurrent: 2``, one cell per slot: an uncapped grid
   starts every trial driver at once and the ones without a slot wait for it, which would count as their start-up);
3. **in-process**: each cell through ``run_local`` at one torch thread (the reference for the per-epoch cost).

Reported: each round's wall time and the ratio sequential / concurrent (the 2-slot limit is 2×); the per-epoch time
(the median gap between consecutive ``train/loss`` timestamps in MLflow, epoch 2 on) on Ray (sequential round, no
other cell competing) and in-process, and their ratio; and start-up separately: for a Ray cell, its trial's time to
its first report (Tune's ``time_total_s``) less one epoch; in-process, the call to its first logged epoch less one
epoch. A fresh workdir per round; every figure is computed from the runs' own records.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

SLOTS = 2  # worker nodes, one slot each
CELLS = [("RGB only", {"model.name": "unimodal", "model.params.modality": "rgb", "data.modalities": ["rgb"]}),
         ("Late fusion", {"model.name": "late_fusion"}), ("Shared BN", {"model.name": "shared_bn"}),
         ("CEN", {"model.name": "cen"})]


def grid_file(path: Path, name: str, data: Path, epochs: int, crop: tuple[int, int], batch: int,
              max_concurrent: int | None) -> Path:
    tree = {
        "grid": {"name": name, "estimate": {"device": "cpu", "kind": "cpu", "peak_tflops": 0.3, "mfu": 0.3},
                 **({"max_concurrent": max_concurrent} if max_concurrent else {})},
        "base": {"data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": list(crop)},
                 "model": {"backbone": "resnet_mini"},
                 "train": {"epochs": epochs, "batch_size": batch, "optimizer": "adam", "lr_encoder": 1e-3,
                           "lr_decoder": 1e-3, "channels_last": True},
                 "resources": {"num_workers": 1, "cpus_per_worker": 1, "worker_resources": {"slot": 1},
                               "use_gpu": False}},
        "cells": [{"label": label, "set": values} for label, values in CELLS],
    }
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def epoch_gaps(uri: str, experiment: str) -> dict[str, list[float]]:
    """Run name -> seconds between consecutive epochs' ``train/loss`` (MLflow's own timestamps)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    gaps = {}
    for run in runs:
        if run.data.tags.get("fusionlab.kind") == "grid":
            continue
        stamps = sorted((m.step, m.timestamp) for m in client.get_metric_history(run.info.run_id, "train/loss"))
        gaps[run.info.run_name] = [(b[1] - a[1]) / 1000 for a, b in zip(stamps, stamps[1:], strict=False)]
    return gaps


def first_logged(uri: str, experiment: str) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return {run.info.run_name: min(m.timestamp for m in client.get_metric_history(run.info.run_id, "train/loss"))
            / 1000 for run in runs if "train/loss" in run.data.metrics}


def trial_startups(launch_dir: Path) -> dict[str, float]:
    """Cell -> its trial's time to its first report (trial start to epoch 0 reported)."""
    startups = {}
    for result_file in launch_dir.glob("*/result.json"):
        first = json.loads(result_file.read_text().splitlines()[0])
        startups[first["config"]["cell"]] = float(first["time_total_s"])
    return startups


def ray_round(label: str, root: Path, data: Path, args, max_concurrent: int | None) -> dict[str, Any]:
    from fusionlab.tracking import default_tracking_uri
    from fusionlab.tune.grid import load_grid
    from fusionlab.tune.grid_runner import run_grid

    workdir = root / label
    name = f"scaling-{label}"
    grid = load_grid(grid_file(root / f"{label}.yaml", name, data, args.epochs, args.crop, args.batch,
                               max_concurrent))
    started = time.perf_counter()
    outcome = run_grid(grid, workdir)
    wall = time.perf_counter() - started
    if outcome.failed:
        raise SystemExit(f"{label}: {outcome.summary()}")
    gaps = epoch_gaps(default_tracking_uri(workdir), name)
    return {"wall": wall, "gaps": gaps, "startups": trial_startups(workdir / "grids" / name / "launch-001")}


def local_round(root: Path, data: Path, args) -> dict[str, Any]:
    import torch

    from fusionlab.tracking import default_tracking_uri
    from fusionlab.train.driver import run_local
    from fusionlab.tune.grid import load_grid, prepare_run, run_tags

    workdir = root / "in-process"
    name = "scaling-in-process"
    grid = load_grid(grid_file(root / "in-process.yaml", name, data, args.epochs, args.crop, args.batch, None))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray worker with one CPU (OMP_NUM_THREADS=1)
    calls = {}
    started = time.perf_counter()
    try:
        for run in grid.cells_expanded():
            config = prepare_run(run)
            calls[config.run_name()] = time.time()
            run_local(config, workdir, tags=run_tags(run))
    finally:
        torch.set_num_threads(threads)
    wall = time.perf_counter() - started
    uri = default_tracking_uri(workdir)
    gaps = epoch_gaps(uri, name)
    firsts = first_logged(uri, name)
    return {"wall": wall, "gaps": gaps, "startups": {run: firsts[run] - calls[run] for run in calls}}


def median_epoch(gaps: dict[str, list[float]]) -> float:
    return statistics.median(gap for values in gaps.values() for gap in values[1:] or values)


def startup(result: dict[str, Any]) -> float:
    """Median over cells of (time to the first logged epoch) less one epoch of that cell."""
    values = [result["startups"][cell] - statistics.median(result["gaps"][cell][1:] or result["gaps"][cell])
              for cell in result["startups"] if result["gaps"].get(cell)]
    return statistics.median(values)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train", type=int, default=32, help="training scenes (val, test: a quarter each)")
    parser.add_argument("--size", default="120x160", help="stored scene size HxW")
    parser.add_argument("--crop", default="96x128", help="training crop HxW")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of each variant, alternating")
    parser.add_argument("--head-cpus", type=int, default=1, help="the head's CPUs (Ray Data tasks)")
    args = parser.parse_args(argv)
    args.crop = tuple(int(v) for v in args.crop.split("x"))
    size = tuple(int(v) for v in args.size.split("x"))

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import ray
    from ray.cluster_utils import Cluster
    from rich.console import Console
    from rich.table import Table

    from fusionlab.train.local_ray import RAY_PROCESS_ENV

    for name, value in RAY_PROCESS_ENV.items():  # as ~/fusionlab.env sets it on a cluster's nodes
        os.environ.setdefault(name, value)

    from fusionlab.data.synthetic import write_synthetic

    console = Console()
    scratch = Path(tempfile.mkdtemp(prefix="grid-scaling-"))
    temp_dir = tempfile.mkdtemp(prefix="rgs-", dir="/tmp")  # Ray's socket paths have a length limit
    data = scratch / "synthetic"
    write_synthetic(data, train=args.train, val=max(4, args.train // 4), test=max(4, args.train // 4), size=size,
                    seed=0)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": args.head_cpus, "resources": {"tune_driver": len(CELLS)}, "include_dashboard": False,
        "temp_dir": temp_dir})
    for name in [f"node_{index}" for index in range(SLOTS)]:
        cluster.add_node(num_cpus=1, resources={"slot": 1, name: 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    rounds: dict[str, list[dict[str, Any]]] = {"sequential": [], "concurrent": [], "in-process": []}
    started = time.perf_counter()
    try:
        for repeat in range(args.repeats):
            order = ["sequential", "concurrent", "in-process"] if repeat % 2 == 0 else ["in-process", "concurrent",
                                                                                        "sequential"]
            for variant in order:
                console.print(f"round {repeat + 1}/{args.repeats}: {variant}", highlight=False)
                root = scratch / f"r{repeat}"
                root.mkdir(exist_ok=True)
                if variant == "in-process":
                    rounds[variant].append(local_round(root, data, args))
                else:
                    rounds[variant].append(ray_round(variant, root, data, args,
                                                     1 if variant == "sequential" else SLOTS))
                console.print(f"  {rounds[variant][-1]['wall']:.1f} s", highlight=False)
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)

    wall = {variant: statistics.median(r["wall"] for r in results) for variant, results in rounds.items()}
    epoch = {variant: statistics.median(median_epoch(r["gaps"]) for r in results) for variant, results in
             rounds.items()}
    start = {variant: statistics.median(startup(r) for r in results) for variant, results in rounds.items()}
    result = {"wall": wall, "epoch": epoch, "startup": start,
              "speedup": wall["sequential"] / wall["concurrent"],
              "epoch_ratio": epoch["sequential"] / epoch["in-process"],
              "seconds": time.perf_counter() - started}

    table = Table(title=f"{len(CELLS)}-cell grid, resnet_mini, {args.epochs} epochs × {args.train} scenes at "
                  f"{args.crop[0]}x{args.crop[1]}, batch {args.batch}, 1 thread per cell; 2 slots "
                  f"(median of {args.repeats})", title_justify="left")
    for header in ("variant", "grid wall s", "vs sequential", "epoch s", "epoch vs in-process", "start-up s"):
        table.add_column(header, justify="left" if header == "variant" else "right")
    for variant in ("sequential", "concurrent", "in-process"):
        table.add_row(variant, f"{wall[variant]:.1f}", f"{wall['sequential'] / wall[variant]:.2f}×",
                      f"{epoch[variant]:.2f}", f"{epoch[variant] / epoch['in-process']:.2f}×",
                      f"{start[variant]:.1f}")
    console.print(table)
    console.print(f"concurrent speed-up {result['speedup']:.2f}× (2-slot limit 2×; target ≥ 1.7×); Ray epoch / "
                  f"in-process epoch {result['epoch_ratio']:.2f}× (target ≤ 1.3×); {result['seconds']:.0f} s in all. "
                  f"The concurrent round's epoch shares the machine's 2 cores with the other cell's Ray Data tasks.",
                  highlight=False)
    return result


if __name__ == "__main__":
    run()
