"""What a GPU node needs from its data loader, estimated from FLOPs and from decoding measured on this machine.

    python bench/gpu_feed_estimate.py                   # the three papers' grids, 12 rows per dataset
    python bench/gpu_feed_estimate.py --rows 24 --json feed.json

For each paper grid's fusion cell (NYUDv2 CEN ResNet-101, SUN RGB-D CEN ResNet-101, Cityscapes AsymFusion
Xception-65) at its crop and batch:

- **samples/s one GPU trains** (an estimate, not a measurement): the device's peak FLOP/s × MFU over the FLOPs of one
  training sample (``tune/grid_estimate.estimate``: FlopCounterMode on the cell's model at its crop, convolutions and
  matmuls only) — for the grid's own ``estimate`` device (an A100 at TF32, the references' fp32 training) and for an
  H100 in bf16 (``models/flops.PEAK_BF16_TFLOPS``), both at the grid's MFU;
- **samples/s one loader process decodes**, measured here: ``ShardDataset(compact=True)`` items (PNG decode of every
  input and the label, the rows as stored) of a synthetic dataset written at the real dataset's image size; and, for
  comparison, the same rows decoded *and* normalised and augmented on the CPU (what a loader process did before the
  rows went to the device compact);
- **loader processes per GPU** = the first / the second, rounded up: ``data.num_workers``, and so
  ``resources.cpus_per_worker`` (one more, the training process's), that keeps that GPU fed;
- **host-to-device bytes per sample**: the compact row against the float32 image and int64 label it replaces.

The decode rate is this machine's CPU on synthetic scenes (smooth shading and noise; real photographs' PNGs decode at
a similar rate per pixel), one process, one torch thread. Every figure is computed when it runs.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

ROOT = Path(__file__).resolve().parents[1]
H100_BF16_TFLOPS = 989.4  # models/flops.PEAK_BF16_TFLOPS, SXM


@dataclass(frozen=True)
class Case:
    name: str
    grid: str  # experiments/<grid>
    cell: str  # its label
    stored: tuple[int, int]  # the dataset's image size (SUN RGB-D's vary: a typical one)


CASES = [Case("NYUDv2", "nyudv2_refinenet.yaml", "CEN, ResNet-101", (480, 640)),
         Case("SUN RGB-D", "sunrgbd_cen.yaml", "CEN, ResNet-101", (530, 730)),
         Case("Cityscapes", "cityscapes_asymfusion.yaml", "AsymFusion", (1024, 2048))]


@dataclass
class Row:
    dataset: str
    cell: str
    crop: tuple[int, int]
    batch: int
    gflops_per_sample: float
    grid_device: str
    gpu_samples_per_s: float  # on the grid's estimate device
    h100_samples_per_s: float
    decode_samples_per_s: float  # one loader process, rows as stored
    cpu_prepare_samples_per_s: float  # one process, decoded + normalised + augmented on the CPU
    compact_bytes: int
    float_bytes: int

    def processes(self, rate: float, samples_per_s: float) -> int:
        return math.ceil(samples_per_s / rate)


def cell_run(case: Case):
    from fusionlab.tune.grid import load_grid

    runs = [run for run in load_grid(ROOT / "experiments" / case.grid).cells_expanded() if run.label == case.cell]
    if not runs:
        raise SystemExit(f"experiments/{case.grid} has no cell {case.cell!r}")
    return runs[0]


def samples_per_s(rate_fn, items: int, repeats: int) -> float:
    """Items per second: the median of ``repeats`` timed passes over ``items`` calls of ``rate_fn(i)``."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for index in range(items):
            rate_fn(index)
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates)


def measure(case: Case, rows: int, repeats: int, workdir: Path) -> Row:
    from fusionlab.data.synthetic import write_synthetic
    from fusionlab.data.torch_dataset import ShardDataset
    from fusionlab.train.context import training_augment
    from fusionlab.tune.grid_estimate import estimate

    run = cell_run(case)
    config, spec = run.config, run.grid.estimate
    flops = estimate(run).flops_per_sample
    crop = tuple(config.data.crop)
    root = workdir / case.name.replace(" ", "_")
    print(f"[{case.name}] writing {rows} synthetic rows at {case.stored[0]}x{case.stored[1]}", flush=True)
    write_synthetic(root, train=rows, val=0, test=0, size=case.stored, seed=0)
    compact = ShardDataset(root, "train", compact=True)
    prepared = ShardDataset(root, "train", seed=0)
    prepared.augment = training_augment(config, case.stored)
    print(f"[{case.name}] timing decode ({repeats} passes)", flush=True)
    decode = samples_per_s(lambda i: compact[(0, i)], rows, repeats)
    cpu = samples_per_s(lambda i: prepared[(0, i)], rows, repeats)
    row, sample = compact[0], prepared[0]
    compact_bytes = sum(t.numel() * t.element_size() for t in [*row["images"].values(), row["label"]])
    float_bytes = sum(t.numel() * t.element_size() for t in sample.values())
    return Row(case.name, case.cell, crop, config.train.batch_size, flops / 1e9, spec.device,
               spec.peak_tflops * 1e12 * spec.mfu / flops, H100_BF16_TFLOPS * 1e12 * spec.mfu / flops, decode, cpu,
               compact_bytes, float_bytes)


def table(rows: list[Row], mfu: float) -> str:
    lines = ["| dataset (cell, crop, batch) | GFLOP/sample | GPU trains, samples/s (est.) | decode, samples/s/process "
             "| loader processes per GPU (est.) | decode+augment on CPU, samples/s | processes that would need | "
             "bytes to the device per sample: compact / float32 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r.dataset} ({r.cell}, {r.crop[0]}x{r.crop[1]}, {r.batch}) | {r.gflops_per_sample:.0f} "
            f"| {r.gpu_samples_per_s:.1f} A100 TF32 · {r.h100_samples_per_s:.1f} H100 bf16 "
            f"| {r.decode_samples_per_s:.1f} "
            f"| {r.processes(r.decode_samples_per_s, r.gpu_samples_per_s)} · "
            f"{r.processes(r.decode_samples_per_s, r.h100_samples_per_s)} "
            f"| {r.cpu_prepare_samples_per_s:.1f} "
            f"| {r.processes(r.cpu_prepare_samples_per_s, r.gpu_samples_per_s)} · "
            f"{r.processes(r.cpu_prepare_samples_per_s, r.h100_samples_per_s)} "
            f"| {r.compact_bytes / 2**20:.1f} MiB / {r.float_bytes / 2**20:.1f} MiB |")
    lines.append(f"\nEstimates at MFU {mfu:g} (the grids' `estimate.mfu`); decode rates measured on this machine.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=12, help="synthetic rows per dataset")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--datasets", default=",".join(case.name for case in CASES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as in a loader process
    chosen = [case for case in CASES if case.name in args.datasets.split(",")]
    with tempfile.TemporaryDirectory(prefix="feed-") as workdir:
        rows = [measure(case, args.rows, args.repeats, Path(workdir)) for case in chosen]
    mfus = {cell_run(case).grid.estimate.mfu for case in chosen}
    print(table(rows, float(np.mean(sorted(mfus)))))
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=2))


if __name__ == "__main__":
    main()
