"""Loader throughput: decode + augment per core for three storage formats, and the training loader's samples/s with
N CPU workers against a training step's rate.

1. Per core: Arrow shards (PNG or raw bytes) vs a folder of PNGs (the reference layout). All three hold the same
   synthetic RGB-D samples at ``--size`` and go through the same transform code; only the storage and the reading
   differ. One process, one torch thread.
2. Workers: a ``torch.utils.data.DataLoader`` over the Arrow raw shards (what training reads) with each of
   ``--workers`` worker processes, batch ``--batch``, augment on: samples/s (best of ``--repeats`` passes after a
   warm-up pass). With ``--step-samples-per-s`` (from bench/step_throughput.py on the training device) it prints the
   ratio loader / step and whether the loader keeps up (>= 3x, issue 9), and the workers that would need at the
   best per-worker rate.

    python bench/loader_throughput.py --samples 48
    python bench/loader_throughput.py --size 480x640 --workers 1,2,4,8 --step-samples-per-s 40 --loader-only
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.progress import track
from rich.table import Table

from fusionlab.data import DatasetWriter, LabelSpec, Manifest, Sample, depth_mm_spec, rgb_spec
from fusionlab.data.synthetic import SYNTHETIC_CLASSES, render_scene
from fusionlab.data.torch_dataset import ShardDataset
from fusionlab.data.transforms import Augment, prepare


def scenes(count: int, height: int, width: int) -> list[Sample]:
    samples = []
    for index in track(range(count), description="rendering scenes", transient=True):
        rgb, depth, label = render_scene(np.random.default_rng([7, index]), height, width)
        samples.append(Sample(f"{index:06d}", "train", {"rgb": rgb, "depth": depth}, label))
    return samples


def manifest(encoding: str) -> Manifest:
    return Manifest(name="bench", task="segmentation",
                    modalities={"rgb": rgb_spec(encoding), "depth": depth_mm_spec(encoding)},
                    label=LabelSpec(classes=SYNTHETIC_CLASSES, encoding=encoding))


def write_arrow(root: Path, encoding: str, samples: list[Sample]) -> Path:
    out = root / f"arrow-{encoding}"
    with DatasetWriter(out, manifest(encoding)) as writer:
        for sample in samples:
            writer.write(sample)
    return out


def write_png_folder(root: Path, samples: list[Sample]) -> Path:
    """The CEN / Light-Weight RefineNet layout: rgb/, depth/, masks/ and a tab-separated train.txt."""
    out = root / "png-folder"
    for sub in ("rgb", "depth", "masks"):
        (out / sub).mkdir(parents=True)
    lines = []
    for sample in samples:
        name = f"{sample.sample_id}.png"
        Image.fromarray(sample.modalities["rgb"]).save(out / "rgb" / name, compress_level=1)
        Image.fromarray(sample.modalities["depth"]).save(out / "depth" / name, compress_level=1)
        Image.fromarray(sample.label).save(out / "masks" / name, compress_level=1)
        lines.append(f"rgb/{name}\tmasks/{name}\tdepth/{name}")
    (out / "train.txt").write_text("\n".join(lines) + "\n")
    return out


def png_folder_reader(root: Path, augment: Augment | None) -> tuple[int, Callable[[int], dict]]:
    spec = manifest("png")
    entries = [line.split("\t") for line in (root / "train.txt").read_text().splitlines()]

    def load(index: int) -> dict:
        rgb_path, mask_path, depth_path = entries[index]
        arrays = [np.asarray(Image.open(root / path)) for path in (rgb_path, depth_path, mask_path)]
        sample = Sample(str(index), "train", {"rgb": arrays[0], "depth": arrays[1]}, arrays[2])
        rng = np.random.default_rng(index) if augment else None
        return prepare(sample, spec, ["rgb", "depth"], augment, rng)

    return len(entries), load


def arrow_reader(root: Path, augment: Augment | None) -> tuple[int, Callable[[int], dict]]:
    dataset = ShardDataset(root, "train", augment=augment)
    return len(dataset), dataset.__getitem__


def samples_per_second(reader: tuple[int, Callable[[int], dict]], repeats: int) -> float:
    count, load = reader
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        for index in range(count):
            load(index)
        best = min(best, time.perf_counter() - began)
    return count / best


def loader_samples_per_second(root: Path, augment: Augment, workers: int, batch: int, repeats: int) -> float:
    """Samples/s of the training DataLoader with ``workers`` processes (0: in this process), after a warm-up pass."""
    dataset = ShardDataset(root, "train", augment=augment)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0)
    best = float("inf")
    for attempt in range(repeats + 1):
        dataset.set_epoch(attempt)  # with persistent workers the epoch reaches them only on restart: fine here
        began = time.perf_counter()
        for _ in loader:
            pass
        if attempt > 0:  # the first pass starts the workers
            best = min(best, time.perf_counter() - began)
    return len(dataset) / best


def worker_table(root: Path, augment: Augment, args: argparse.Namespace, height: int, width: int) -> dict:
    workers = [int(w) for w in args.workers.split(",")]
    rates = {w: loader_samples_per_second(root, augment, w, args.batch, args.repeats) for w in workers}
    step = args.step_samples_per_s
    table = Table(title=f"training DataLoader (arrow raw, augment on): {args.samples} samples at {height}x{width}, "
                        f"batch {args.batch}; {os.cpu_count()} CPUs here"
                        + (f"; step {step:g} samples/s" if step else ""))
    columns = ["CPU workers", "samples/s", "samples/s per worker"] + (["loader / step", ">= 3x"] if step else [])
    for column in columns:
        table.add_column(column, justify="right")
    for count, rate in rates.items():
        cells = [str(count) if count else "0 (main process)", f"{rate:.1f}", f"{rate / max(count, 1):.1f}"]
        if step:
            cells += [f"{rate / step:.2f}x", "yes" if rate >= 3 * step else "no"]
        table.add_row(*cells)
    Console(width=150).print(table)
    result = {"rates": rates}
    if step:
        per_worker = max(rate / max(count, 1) for count, rate in rates.items())
        needed = math.ceil(3 * step / per_worker)
        result["workers_needed"] = needed
        print(f"to keep up (loader >= 3x step = {3 * step:g} samples/s): ~{needed} CPU workers at the best "
              f"per-worker rate ({per_worker:.1f} samples/s), linear beyond the {max(rates)} workers measured")
    return result


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--size", default="480x640")
    parser.add_argument("--repeats", type=int, default=3, help="best of N passes over the data")
    parser.add_argument("--workers", default="1,2", help="comma-separated DataLoader worker counts")
    parser.add_argument("--batch", type=int, default=8, help="DataLoader batch size")
    parser.add_argument("--step-samples-per-s", type=float, default=None,
                        help="the training step's samples/s (bench/step_throughput.py) to compare the loader with")
    parser.add_argument("--loader-only", action="store_true", help="skip the per-core storage-format table")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(1)
    augment = Augment(crop=(height, width))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        samples = scenes(args.samples, height, width)
        raw = write_arrow(root, "raw", samples)
        sources = {"arrow, raw bytes (zstd)": (raw, arrow_reader)}
        if not args.loader_only:
            sources = {
                "arrow, png bytes": (write_arrow(root, "png", samples), arrow_reader),
                **sources,
                "png folder (reference layout)": (write_png_folder(root, samples), png_folder_reader),
            }
        del samples
        results = {}
        if not args.loader_only:
            for name, (path, make_reader) in sources.items():
                decode = samples_per_second(make_reader(path, None), args.repeats)
                full = samples_per_second(make_reader(path, augment), args.repeats)
                results[name] = (directory_bytes(path) / args.samples, decode, full)
        workers = worker_table(raw, augment, args, height, width)

    if results:
        baseline = results["png folder (reference layout)"][2]
        table = Table(title=f"loader throughput per core: {args.samples} RGB-D samples at {height}x{width}, "
                            f"augment = scale 0.5-2 + pad/crop {height}x{width} + flip")
        for column in ("source", "KiB/sample", "decode samples/s", "decode+augment samples/s", "vs png folder"):
            table.add_column(column, justify="right")
        for name, (size, decode, full) in results.items():
            table.add_row(name, f"{size / 1024:.0f}", f"{decode:.1f}", f"{full:.1f}", f"{full / baseline:.2f}x")
        Console(width=150).print(table)
    return workers


if __name__ == "__main__":
    main()
