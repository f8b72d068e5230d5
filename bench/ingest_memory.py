"""Data ingest at cluster scale: a node's resident memory and each worker's samples/s with the node's one copy of a
split (``data.node_cache``) against a private copy per worker, and a Ray epoch against the same epoch in-process.

    python bench/ingest_memory.py                                  # nyudv2, sunrgbd, cityscapes; 1, 2, 4 workers
    python bench/ingest_memory.py --datasets nyudv2 --workers 1,2 --rows nyudv2=48 --json out.json --plot mem.png
    python bench/ingest_memory.py --quick                          # tiny images, a smoke run of every piece

**Cluster.** A ``ray.cluster_utils.Cluster`` on this machine (its temp dir and ``$RAY_TMPDIR`` our own, as
tests/loopback_cluster.py): a head (1 CPU; the driver, Ray Train's controller) and the measured node ``node_a``
(``--node-cpus`` CPUs, default 4, and a ``node_a`` custom resource). Each cell is a ``TorchTrainer`` of W workers
asking ``{"CPU": 1, "node_a": 0.01}`` each, so every training worker runs on ``node_a``.

**Datasets** (written with ``DatasetWriter``, segmentation, rgb uint8 + depth uint16 mm + uint8 label, raw encoding:
zstd in Parquet, uncompressed in the node's IPC copy), shaped as the real ones: NYUDv2 480×640, SUN RGB-D of
varying size (rows cycle through 530×730, 531×681, 441×591: the manifest's ``image_size`` is null, so ``data.crop``
is required), Cityscapes 1024×2048. Content: two procedurally rendered synthetic-rgbd scenes per size
(``synthetic.render_scene``), each row one of them rolled by a row-dependent offset (every row differs; rendering
32 Cityscapes scenes would take minutes). ``train`` holds the measured rows, ``val`` 4 (the worker context builds its
evaluation part; it is never iterated here).

**Cells.** (dataset, W workers, mode). Each worker builds ``fusionlab.train.context.RayWorkerContext(config)``
(``data.node_cache`` a fresh directory per cell, so the first worker of the cell writes the node's copy, as on a
node's first run; ``data.num_workers`` loader processes per worker, default 1) and iterates
``ctx.train_batches(epoch)`` for 2 epochs (epoch 0: warm-up, loader start-up; epoch 1: timed), touching each
batch's ``image``. Modes:

* ``node copy``: ``RayWorkerContext`` as it is: ``ShardDataset(..., cache_dir=data.node_cache)``.
* ``per-worker copy`` (the previous behaviour, the baseline): the same context with the training split's
  ``ShardDataset`` built with ``cache_dir=None`` (``fusionlab.train.context.ShardDataset`` replaced, in the worker
  process only, by a subclass forcing ``cache_dir=None``): each worker reads the Parquet shards onto its heap. The
  small evaluation split still uses the node copy. Each worker checks ``train_set.mapped`` says which copy it read.

**Node memory** (``node_memory``): the processes of ``node_a`` are its raylet and all its descendants (psutil:
the Ray workers it started, their DataLoader processes, Ray's agents). From each process's ``/proc/PID/smaps``:

* private: ``Private_Clean + Private_Dirty`` of every mapping (pages no other process maps: summed);
* shared anonymous (no inode: heap, stack, ``[anon:...]``, the copy-on-write heap a DataLoader process shares with
  the worker that forked it): ``Pss − Private_*`` of each mapping, i.e. each shared page divided by its mappers
  (summed: exact when every mapper is a process of the node, as here);
* shared file-backed (grouped by device and inode: libraries, the node's IPC copy, the Parquet shards, Ray's
  ``/dev/shm`` object store): ``Shared_Clean + Shared_Dirty`` summed per process per file, then the **maximum over
  the node's processes** per file: a file's shared pages counted once per node (a library mapped on every node of
  this one machine counts in full on each, as on separate machines). This is a lower bound of the union when
  processes map different parts of a file; pages of the IPC copy that only one process maps are private to it and
  already summed above.

node bytes = Σ private + Σ shared anonymous + Σ_files max_process shared. Page cache that no process maps (the
copy just written, the shards read) is not counted: it is reclaimable. A thread samples it every ``--interval`` s
(default 0.5; a sample reads every process's smaps, ~10 ms each); the **idle baseline** is the median of 5 samples
taken before the cell with no training worker on the node; reported: the peak over the cell (trainer start to
end), absolute and less the baseline, and the peak after every worker's context was built (steady: the node's
copy written and mapped).

**Samples/s per worker**: epoch 1's rows / seconds of each worker, the median over workers (and their sum, the
node's). On this 2-core machine the CPU-bound decoding of W workers shares 2 cores: expect the per-worker figure to
fall as 1/W beyond 2 workers (not a property of the feed).

**Targets.** Memory: fit peak − idle = a + b·W over each mode's cells; the node copy's b is the constant per
worker (its process, torch, its loader process, batches in flight); PASS when the node copy's a ≤ the baseline's
a (what any run holds whatever W: Ray's agents at work, the evaluation split's copy) + 1.25 × the IPC split + 64
MiB (the split held once, plus the writer's transient row group), and its b ≤ the baseline's b − 0.5 × split (the
baseline's slope carries a copy of the split per worker, the node copy's does not). Epoch (on unless
``--no-epoch-ratio``; run first): one CEN ``resnet_mini`` cell (32 synthetic-rgbd scenes at 120×160, crop 96×128,
batch 8, 4 epochs, one torch thread) with ``fusionlab.train.driver.run_ray`` (one worker on ``node_a``) and
``run_local``; the median per-epoch time read off each run's MLflow ``train/loss`` timestamps
(``grid_scaling.epoch_gaps`` / ``median_epoch``: epoch 2 on); PASS when Ray / in-process ≤ 1.1. Ray Train's
controller polls its workers every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` (Ray's default 2 s) and a worker's next
``report`` waits for that poll, so an epoch shorter than the interval is stretched to it (this machine's 1.35 s
epoch measured 2.01 s); fusionlab's Ray processes run at 0.5 s (``train/local_ray.RAY_PROCESS_ENV``, which the
cluster YAMLs' ``~/fusionlab.env`` exports too), and so do this cluster's nodes, which inherit this process's
environment as a cluster's nodes source that file. ``--ratio-set`` changes both runs' config (e.g.
``train.val_every=100``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

MiB = 2**20
NODE = "node_a"
NODE_COPY, PER_WORKER = "node copy", "per-worker copy"
MODES = (NODE_COPY, PER_WORKER)
EPOCHS = 2  # epoch 0 warm-up, epoch 1 timed
VAL_ROWS = 4


@dataclass(frozen=True)
class DatasetShape:
    name: str
    sizes: tuple[tuple[int, int], ...]  # rows cycle through these (H, W)
    rows: int
    crop: tuple[int, int]
    batch: int = 4


DATASETS = {
    "nyudv2": DatasetShape("nyudv2", ((480, 640),), 96, (480, 640)),
    "sunrgbd": DatasetShape("sunrgbd", ((530, 730), (531, 681), (441, 591)), 96, (480, 640)),
    "cityscapes": DatasetShape("cityscapes", ((1024, 2048),), 32, (512, 1024)),
}


def quick_shape(shape: DatasetShape) -> DatasetShape:
    """The same dataset at an eighth of the side, 8 rows, batch 2 (for tests and smoke runs)."""
    def eighth(size):
        return max(8, size[0] // 8), max(8, size[1] // 8)
    return DatasetShape(shape.name, tuple(eighth(size) for size in shape.sizes), 8, eighth(shape.crop), batch=2)


# -- node memory ---------------------------------------------------------------------------------------------------


@dataclass
class ProcessPages:
    """One process's pages from its smaps, in bytes."""

    private: int = 0  # Private_Clean + Private_Dirty, every mapping
    shared_anon: int = 0  # Pss - Private_* of mappings without an inode
    shared_files: dict[tuple[str, str], int] = field(default_factory=dict)  # (dev, inode) -> Shared_* bytes
    private_files: dict[tuple[str, str], int] = field(default_factory=dict)  # (dev, inode) -> Private_* bytes
    paths: dict[tuple[str, str], str] = field(default_factory=dict)


def parse_smaps(text: str) -> ProcessPages:
    """``/proc/PID/smaps`` text to its private, shared anonymous and per-file shared pages."""
    pages = ProcessPages()
    shared_files: dict[tuple[str, str], int] = defaultdict(int)
    private_files: dict[tuple[str, str], int] = defaultdict(int)
    key: tuple[str, str] | None = None
    pss = private = shared = 0

    def close_mapping():
        if key is None:
            pages.shared_anon += max(0, pss - private)
        else:
            shared_files[key] += shared
            private_files[key] += private
        pages.private += private

    started = False
    for line in text.splitlines():
        if not line:
            continue
        if line[0].isupper():  # a field of the current mapping
            if line.startswith(("Pss:", "Shared_Clean:", "Shared_Dirty:", "Private_Clean:", "Private_Dirty:")):
                name, value = line.split()[:2]
                value = int(value) * 1024
                if name == "Pss:":
                    pss = value
                elif name.startswith("Shared_"):
                    shared += value
                else:
                    private += value
            continue
        if started:
            close_mapping()
        started = True
        parts = line.split(None, 5)  # address perms offset dev inode [path]
        key = (parts[3], parts[4]) if len(parts) > 4 and parts[4] != "0" else None
        if key is not None:
            pages.paths.setdefault(key, parts[5] if len(parts) > 5 else "")
        pss = private = shared = 0
    if started:
        close_mapping()
    pages.shared_files, pages.private_files = dict(shared_files), dict(private_files)
    return pages


@dataclass
class NodeMemory:
    total: int
    private: int
    shared_anon: int
    shared_files: int
    processes: int
    largest_files: list[tuple[str, int]]  # path, resident bytes (private + max shared) of the largest few
    roles: dict[str, tuple[int, int]] = field(default_factory=dict)  # role -> (processes, private + shared anon)


def node_memory(processes: list[ProcessPages], top: int = 3, roles: list[str] | None = None) -> NodeMemory:
    """The node's resident bytes: Σ private + Σ shared anonymous + Σ over files of the max shared over processes."""
    shared_max: dict[tuple[str, str], int] = {}
    private_per_file: dict[tuple[str, str], int] = defaultdict(int)
    paths: dict[tuple[str, str], str] = {}
    for pages in processes:
        for key, value in pages.shared_files.items():
            shared_max[key] = max(shared_max.get(key, 0), value)
        for key, value in pages.private_files.items():
            private_per_file[key] += value
        paths.update(pages.paths)
    private = sum(pages.private for pages in processes)
    shared_anon = sum(pages.shared_anon for pages in processes)
    shared_files = sum(shared_max.values())
    resident = {key: shared_max.get(key, 0) + private_per_file.get(key, 0) for key in paths}
    largest = sorted(((paths[key], value) for key, value in resident.items()), key=lambda item: -item[1])[:top]
    by_role: dict[str, tuple[int, int]] = {}
    for role, pages in zip(roles or [], processes, strict=False):
        count, total = by_role.get(role, (0, 0))
        by_role[role] = (count + 1, total + pages.private + pages.shared_anon)
    return NodeMemory(private + shared_anon + shared_files, private, shared_anon, shared_files, len(processes),
                      largest, by_role)


def _psutil():
    """psutil: Ray's copy (ray/thirdparty_files, put on the path by ``import ray``) when the venv has none."""
    import importlib

    try:
        return importlib.import_module("psutil")
    except ImportError:
        importlib.import_module("ray")
        return importlib.import_module("psutil")


def process_tree(root_pid: int) -> list[int]:
    """``root_pid`` and its descendants (those alive now)."""
    psutil = _psutil()

    try:
        root = psutil.Process(root_pid)
        return [root_pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def read_pages(pids: list[int]) -> list[ProcessPages]:
    return [pages for _, pages in read_pages_by_pid(pids)]


def read_pages_by_pid(pids: list[int]) -> list[tuple[int, ProcessPages]]:
    pages = []
    for pid in pids:
        try:
            pages.append((pid, parse_smaps(Path(f"/proc/{pid}/smaps").read_text())))
        except (FileNotFoundError, ProcessLookupError, PermissionError):  # gone since it was listed
            continue
    return pages


def process_roles(root_pid: int) -> dict[int, str]:
    """Each process of the tree under the raylet ``root_pid`` by role: raylet, agent (Ray's dashboard and runtime
    env agents), train worker (a Ray Train worker), loader (a process a train worker started: its DataLoader's),
    other (any other Ray worker)."""
    psutil = _psutil()
    roles = {root_pid: "raylet"}
    try:
        children = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return roles
    parents = {}
    for child in children:
        with contextlib.suppress(psutil.Error):
            name = (child.cmdline() or ["?"])[0]
            parents[child.pid] = child.ppid()
            roles[child.pid] = ("agent" if "Agent" in name else "train worker" if "RayTrainWorker" in name
                                else "other")
    for pid, parent in parents.items():
        if parent != root_pid:
            roles[pid] = "loader"
    return roles


def sample_tree(root_pid: int) -> NodeMemory:
    roles = process_roles(root_pid)
    pages = read_pages_by_pid(list(roles))
    return node_memory([one for _, one in pages], roles=[roles[pid] for pid, _ in pages])


class Sampler:
    """A thread sampling ``sample_tree(root_pid)`` every ``interval`` s: ``samples`` is [(time, NodeMemory)]."""

    def __init__(self, root_pid: int, interval: float = 0.5):
        self.root_pid, self.interval = root_pid, interval
        self.samples: list[tuple[float, NodeMemory]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.samples.append((time.time(), sample_tree(self.root_pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, since: float = 0.0) -> NodeMemory | None:
        window = [memory for at, memory in self.samples if at >= since]
        return max(window, key=lambda memory: memory.total) if window else None


# -- datasets ------------------------------------------------------------------------------------------------------


def row_sizes(shape: DatasetShape, count: int) -> list[tuple[int, int]]:
    return [shape.sizes[index % len(shape.sizes)] for index in range(count)]


def write_dataset(out: Path, shape: DatasetShape, seed: int = 0):
    """``shape.rows`` train rows and ``VAL_ROWS`` val rows of the shape's sizes (see the module docstring)."""
    import numpy as np

    from fusionlab.data.manifest import LabelSpec, Manifest, depth_mm_spec, rgb_spec
    from fusionlab.data.sample import Sample
    from fusionlab.data.synthetic import IGNORE_INDEX, SYNTHETIC_CLASSES, render_scene
    from fusionlab.data.writer import DatasetWriter

    manifest = Manifest(name=f"{shape.name}-shaped", task="segmentation",
                        modalities={"rgb": rgb_spec(), "depth": depth_mm_spec()},
                        label=LabelSpec(SYNTHETIC_CLASSES, ignore_index=IGNORE_INDEX),
                        source={"generator": "bench/ingest_memory.py", "seed": seed,
                                "sizes": [list(size) for size in shape.sizes]})
    bases = {size: [render_scene(np.random.default_rng([seed, index, *size]), *size) for index in range(2)]
             for size in shape.sizes}
    with DatasetWriter(out, manifest) as writer:
        for split, count in (("train", shape.rows), ("val", VAL_ROWS)):
            for index, size in enumerate(row_sizes(shape, count)):
                rgb, depth, label = bases[size][(index // len(shape.sizes)) % 2]
                shift = ((37 * index + (split == "val") * 11) % size[0], (53 * index) % size[1])
                rolled = [np.roll(array, shift, axis=(0, 1)) for array in (rgb, depth, label)]
                writer.write(Sample(f"{split}-{index:05d}", split, {"rgb": rolled[0], "depth": rolled[1]},
                                    rolled[2]))
    return writer.manifest


def encoded_row_bytes(size: tuple[int, int]) -> int:
    """One row's encoded (raw) bytes: rgb 3 B, depth 2 B, label 1 B per pixel."""
    return size[0] * size[1] * 6


# -- the worker side -----------------------------------------------------------------------------------------------


def ingest_loop(cfg: dict[str, Any]) -> None:
    """Ray Train's per-worker function: build the worker context, iterate its training batches, write its timings
    to ``cfg["out"]/rank<N>.json``."""
    import ray.train

    import fusionlab.train.context as context_module
    from fusionlab.config import Config

    if cfg["mode"] == PER_WORKER:
        base = context_module.ShardDataset

        class PrivateCopy(base):  # the previous behaviour: the Parquet shards onto this process's heap
            def __init__(self, *args, **kwargs):
                kwargs["cache_dir"] = None
                super().__init__(*args, **kwargs)

        context_module.ShardDataset = PrivateCopy
    config = Config.model_validate(cfg["config"])
    started = time.time()
    ctx = context_module.RayWorkerContext(config)
    ready = time.time()
    mapped = ctx.train_set.mapped
    if (mapped is None) != (cfg["mode"] == PER_WORKER):
        raise RuntimeError(f"{cfg['mode']}: the training split's copy is {mapped}")
    epochs, shape = [], None
    for epoch in range(EPOCHS):
        begin, rows, first = time.perf_counter(), 0, None
        for batch in ctx.train_batches(epoch):
            image = batch["image"]
            rows += image.shape[0]
            shape = list(image.shape)
            float(image[0, 0, 0, 0, 0])  # touch it
            first = first or time.perf_counter()
        end = time.perf_counter()
        epochs.append({"rows": rows, "seconds": end - begin, "first_batch_s": (first or end) - begin})
    record = {"rank": ctx.rank, "pid": os.getpid(), "started": started, "ready": ready, "ended": time.time(),
              "mapped": str(mapped) if mapped else None, "image_shape": shape, "epochs": epochs,
              "loader_workers": ctx.train_loader.num_workers}
    Path(cfg["out"], f"rank{ctx.rank}.json").write_text(json.dumps(record))
    ray.train.report({"rows": epochs[-1]["rows"]})


def cell_config(data: Path, shape: DatasetShape, cache: Path, loader_workers: int) -> dict[str, Any]:
    from fusionlab.train.prepare import parse_config

    tree = {"data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": list(shape.crop),
                     "node_cache": str(cache), "num_workers": loader_workers, "test_split": None},
            "model": {"name": "cen", "backbone": "resnet_mini"},
            "train": {"epochs": EPOCHS, "batch_size": shape.batch, "optimizer": "adam", "lr_encoder": 1e-3,
                      "lr_decoder": 1e-3},
            "resources": {"num_workers": 1, "cpus_per_worker": 1, "use_gpu": False},
            "tracking": {"experiment": "ingest-memory"}}
    return parse_config(tree).model_dump(mode="json", by_alias=True)


def node_processes(root_pid: int) -> list[str]:
    psutil = _psutil()

    names = []
    for pid in process_tree(root_pid):
        with contextlib.suppress(psutil.Error):
            cmdline = psutil.Process(pid).cmdline()
            names.append((cmdline[0] if cmdline else "?").split("/")[-1][:40])
    return sorted(names)


def wait_idle(root_pid: int, idle: list[str], timeout: float = 30.0) -> None:
    """Until the node's processes are those it had at start (``idle``; and idle Ray workers): the exit of a
    finished cell's workers lags the trainer's end."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(name in idle or name == "ray::IDLE" for name in node_processes(root_pid)):
            return
        time.sleep(0.5)
    progress(f"  (the node still runs {sorted(set(node_processes(root_pid)) - set(idle))} after {timeout:.0f} s)")


def idle_baseline(root_pid: int, samples: int = 5, gap: float = 0.3) -> int:
    values = []
    for _ in range(samples):
        values.append(sample_tree(root_pid).total)
        time.sleep(gap)
    return int(statistics.median(values))


def run_cell(scratch: Path, data: Path, shape: DatasetShape, workers: int, mode: str, raylet: int,
             idle: list[str], args) -> dict[str, Any]:
    import ray.train
    from ray.train.torch import TorchTrainer

    name = f"{shape.name}-{workers}-{'node' if mode == NODE_COPY else 'private'}"
    cache, out = scratch / f"cache-{name}", scratch / f"out-{name}"
    out.mkdir()
    wait_idle(raylet, idle)
    baseline = idle_baseline(raylet)
    trainer = TorchTrainer(
        ingest_loop,
        train_loop_config={"mode": mode, "out": str(out),
                           "config": cell_config(data, shape, cache, args.loader_workers)},
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=False,
                                               resources_per_worker={"CPU": 1, NODE: 0.01}),
        run_config=ray.train.RunConfig(name=name, storage_path=str(scratch / "ray-results")))
    started = time.time()
    with Sampler(raylet, args.interval) as sampler:
        trainer.fit()
    wall = time.time() - started
    records = [json.loads(path.read_text()) for path in sorted(out.glob("rank*.json"))]
    if len(records) != workers:
        raise RuntimeError(f"{name}: {len(records)} of {workers} workers wrote their timings")
    peak, steady = sampler.peak(), sampler.peak(since=max(record["ready"] for record in records))
    split_files = sorted(cache.glob("*train*.arrow")) or sorted(cache.glob("*.arrow"), key=lambda p: -p.stat().st_size)
    ipc_bytes = split_files[0].stat().st_size if split_files and mode == NODE_COPY else None
    shutil.rmtree(cache, ignore_errors=True)
    rates = [record["epochs"][-1]["rows"] / record["epochs"][-1]["seconds"] for record in records]
    return {"dataset": shape.name, "workers": workers, "mode": mode, "wall_s": wall, "idle": baseline,
            "peak": peak.total, "peak_over_idle": peak.total - baseline,
            "steady_over_idle": (steady.total - baseline) if steady else None,
            "peak_parts": {"private": peak.private, "shared_anon": peak.shared_anon,
                           "shared_files": peak.shared_files, "processes": peak.processes},
            "largest_files": peak.largest_files, "samples": len(sampler.samples), "peak_roles": peak.roles,
            "rows_per_s_worker": statistics.median(rates), "rows_per_s_node": sum(rates),
            "rows_per_worker": records[0]["epochs"][-1]["rows"], "image_shape": records[0]["image_shape"],
            "loader_workers": records[0]["loader_workers"], "ipc_bytes": ipc_bytes}


# -- targets -------------------------------------------------------------------------------------------------------


def linear_fit(points: dict[int, float]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of value against worker count."""
    xs, ys = list(points), list(points.values())
    if len(xs) < 2:
        return (ys[0], 0.0) if ys else (math.nan, math.nan)
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2
                                                                                       for x in xs)
    return mean_y - slope * mean_x, slope


def memory_target(split_bytes: int, node_copy: dict[int, float], per_worker: dict[int, float] | None = None
                  ) -> dict[str, Any]:
    """Fit node − idle = a + b·W to each mode's cells. PASS when the node copy holds the split once: its intercept
    is at most the baseline's (what a run holds whatever W, with no shared copy) + 1.25 × split + 64 MiB (without a
    baseline: 1.25 × split + 128 MiB), and its slope b (the constant per worker) lacks the split the baseline's
    slope carries: b ≤ baseline slope − 0.5 × split (skipped without a baseline or with one worker count)."""
    intercept, slope = linear_fit(node_copy)
    baseline_intercept = baseline_slope = None
    if per_worker and len(per_worker) >= 2 and len(node_copy) >= 2:
        baseline_intercept, baseline_slope = linear_fit(per_worker)
        checks = {"split held once": intercept <= max(baseline_intercept, 0) + 1.25 * split_bytes + 64 * MiB,
                  "no copy per worker": slope <= baseline_slope - 0.5 * split_bytes}
    else:
        checks = {"split held once": intercept <= 1.25 * split_bytes + 128 * MiB}
    return {"intercept": intercept, "per_worker_constant": slope, "baseline_intercept": baseline_intercept,
            "baseline_slope": baseline_slope, "split_bytes": split_bytes, "checks": checks,
            "pass": all(checks.values())}


def epoch_target(ray_epoch: float, local_epoch: float, bound: float = 1.1) -> dict[str, Any]:
    ratio = ray_epoch / local_epoch
    return {"ray": ray_epoch, "in_process": local_epoch, "ratio": ratio, "bound": bound, "pass": ratio <= bound}


# -- the epoch ratio -----------------------------------------------------------------------------------------------


def epoch_ratio(scratch: Path, args) -> dict[str, Any]:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fusionlab.data.synthetic import write_synthetic
    from fusionlab.tracking import default_tracking_uri
    from fusionlab.train.driver import run_local, run_ray
    from fusionlab.train.prepare import parse_config
    from grid_scaling import epoch_gaps, median_epoch

    data = scratch / "synthetic"
    write_synthetic(data, train=32, val=8, test=8, size=(120, 160), seed=0)
    epochs = 2 if args.quick else args.ratio_epochs

    def config(label: str):
        tree = {
            "data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [96, 128], "test_split": None,
                     "node_cache": str(scratch / "ratio-cache")},
            "model": {"name": "cen", "backbone": "resnet_mini"},
            "train": {"epochs": epochs, "batch_size": 8, "optimizer": "adam", "lr_encoder": 1e-3,
                      "lr_decoder": 1e-3, "channels_last": True},
            "resources": {"num_workers": 1, "cpus_per_worker": 1, "worker_resources": {NODE: 0.01},
                          "use_gpu": False},
            "tracking": {"experiment": f"ratio-{label}"}}
        for dotted, value in args.ratio_set:
            *sections, key = dotted.split(".")
            node = tree
            for section in sections:
                node = node.setdefault(section, {})
            node[key] = value
        return parse_config(tree)

    runs: dict[str, list[dict[str, Any]]] = {"ray": [], "in-process": []}
    for repeat in range(args.ratio_repeats):
        for label in ("ray", "in-process") if repeat % 2 == 0 else ("in-process", "ray"):
            progress(f"epoch ratio {repeat + 1}/{args.ratio_repeats}: CEN resnet_mini, {epochs} epochs, {label}")
            workdir = scratch / f"ratio-{label}-{repeat}"
            started = time.perf_counter()
            if label == "ray":
                run_ray(config(label), workdir)
            else:
                threads = torch.get_num_threads()
                torch.set_num_threads(1)  # as a Ray worker with one CPU (OMP_NUM_THREADS=1)
                try:
                    run_local(config(label), workdir)
                finally:
                    torch.set_num_threads(threads)
            gaps = epoch_gaps(default_tracking_uri(workdir), f"ratio-{label}")
            runs[label].append({"epoch": median_epoch(gaps), "gaps": gaps, "wall": time.perf_counter() - started})
            progress(f"  median epoch {runs[label][-1]['epoch']:.2f} s, {runs[label][-1]['wall']:.0f} s in all")
    ray_epoch, local_epoch = (statistics.median(run["epoch"] for run in runs[label]) for label in ("ray",
                                                                                                  "in-process"))
    return {**epoch_target(ray_epoch, local_epoch), "runs": runs, "epochs": epochs, "repeats": args.ratio_repeats}


# -- output --------------------------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def mib(value: float | None) -> str:
    return "—" if value is None else f"{value / MiB:,.0f}"


def per_process(cell: dict[str, Any], role: str) -> str:
    """Private + shared anonymous MiB per process of ``role`` at the cell's peak."""
    count, value = cell.get("peak_roles", {}).get(role, (0, 0))
    return mib(value / count) if count else "—"


def rounds(runs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{run['epoch']:.2f}" for run in runs)


def markdown(result: dict[str, Any]) -> str:
    lines = ["| dataset | rows | Parquet MiB | IPC split MiB |", "|---|---:|---:|---:|"]
    for name, info in result["datasets"].items():
        lines.append(f"| {name} ({info['sizes']}) | {info['rows']} | {mib(info['parquet_bytes'])} | "
                     f"{mib(info['ipc_bytes'])} |")
    lines += ["", "| dataset | workers | mode | idle MiB | peak MiB | peak − idle MiB | steady − idle MiB | "
              "MiB per train worker / loader at peak | samples/s per worker | samples/s node | cell s |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for cell in result["cells"]:
        lines.append(f"| {cell['dataset']} | {cell['workers']} | {cell['mode']} | {mib(cell['idle'])} | "
                     f"{mib(cell['peak'])} | {mib(cell['peak_over_idle'])} | {mib(cell['steady_over_idle'])} | "
                     f"{per_process(cell, 'train worker')} / {per_process(cell, 'loader')} | "
                     f"{cell['rows_per_s_worker']:.2f} | {cell['rows_per_s_node']:.2f} | {cell['wall_s']:.0f} |")
    lines += ["", "| dataset | IPC split MiB | intercept MiB | per-worker constant MiB | baseline intercept MiB | "
              "baseline slope MiB | memory target |", "|---|---:|---:|---:|---:|---:|---|"]
    for name, target in result["memory_targets"].items():
        verdict = "PASS" if target["pass"] else "FAIL"
        detail = ", ".join(f"{check} {'ok' if ok else 'no'}" for check, ok in target["checks"].items())
        lines.append(f"| {name} | {mib(target['split_bytes'])} | {mib(target['intercept'])} | "
                     f"{mib(target['per_worker_constant'])} | {mib(target['baseline_intercept'])} | "
                     f"{mib(target['baseline_slope'])} | {verdict} "
                     f"({detail}) |")
    lines += ["", "| dataset | node − per-worker copy at 1 worker MiB | saved by the node copy at W workers MiB "
              "(in splits; W − 1 expected) |", "|---|---:|---|"]
    for name, info in result["datasets"].items():
        cells = {(cell["workers"], cell["mode"]): cell["peak_over_idle"] for cell in result["cells"]
                 if cell["dataset"] == name}
        counts = sorted({workers for workers, _ in cells})
        if not counts or (counts[0], PER_WORKER) not in cells or (counts[0], NODE_COPY) not in cells:
            continue
        split = info["ipc_bytes"] or info["encoded_bytes"]
        saved = ", ".join(f"W={w}: {mib(cells[w, PER_WORKER] - cells[w, NODE_COPY])} "
                          f"({(cells[w, PER_WORKER] - cells[w, NODE_COPY]) / split:.1f})" for w in counts
                          if (w, PER_WORKER) in cells and (w, NODE_COPY) in cells)
        lines.append(f"| {name} | {mib(cells[counts[0], NODE_COPY] - cells[counts[0], PER_WORKER])} | {saved} |")
    if result.get("epoch_ratio"):
        ratio = result["epoch_ratio"]
        lines += ["", "| CEN resnet_mini, 32 scenes 96×128, batch 8, 1 thread | median epoch s |", "|---|---:|",
                  *(f"| {label}, each round | {rounds(runs)} |" for label, runs in ratio["runs"].items()),
                  f"| Ray (run_ray, 1 worker on {NODE}) | {ratio['ray']:.2f} |",
                  f"| in-process (run_local) | {ratio['in_process']:.2f} |",
                  f"| Ray / in-process | {ratio['ratio']:.2f}× (target ≤ {ratio['bound']}×: "
                  f"{'PASS' if ratio['pass'] else 'FAIL'}) |"]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["datasets"])
    figure, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        for mode, style in ((NODE_COPY, "o-"), (PER_WORKER, "s--")):
            cells = sorted((c["workers"], c["peak_over_idle"] / MiB) for c in result["cells"]
                           if c["dataset"] == name and c["mode"] == mode)
            if cells:
                axis.plot(*zip(*cells, strict=True), style, label=mode)
        split = result["datasets"][name]["ipc_bytes"]
        if split:
            axis.axhline(split / MiB, color="grey", linewidth=0.8, linestyle=":", label="one IPC split")
        axis.set_title(name)
        axis.set_xlabel("Ray Train workers on the node")
        axis.set_ylabel("node peak − idle (MiB)")
        axis.set_xticks(sorted({c["workers"] for c in result["cells"]}))
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


# -- main ----------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="nyudv2,sunrgbd,cityscapes")
    parser.add_argument("--rows", default="", help="overrides, e.g. nyudv2=48,cityscapes=16")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--modes", default="node,private", help="node (node copy), private (per-worker copy)")
    parser.add_argument("--loader-workers", type=int, default=1, help="data.num_workers of every training worker")
    parser.add_argument("--node-cpus", type=int, default=4)
    parser.add_argument("--interval", type=float, default=0.5, help="memory sampling interval, s")
    parser.add_argument("--ratio-epochs", type=int, default=4)
    parser.add_argument("--ratio-repeats", type=int, default=1, help="rounds of the epoch ratio, order alternating")
    parser.add_argument("--ratio-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config setting of both epoch-ratio runs (YAML value), e.g. train.val_every=4")
    parser.add_argument("--no-epoch-ratio", dest="epoch_ratio", action="store_false")
    parser.add_argument("--no-cells", dest="cells", action="store_false", help="only the epoch ratio")
    parser.add_argument("--quick", action="store_true", help="tiny images, 8 rows: a smoke run")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path, help="PNG of node memory against workers per dataset")
    args = parser.parse_args(argv)
    shapes = []
    overrides = dict(item.split("=") for item in args.rows.split(",") if item)
    for name in args.datasets.split(","):
        if name not in DATASETS:
            parser.error(f"--datasets: {name!r} is none of {', '.join(DATASETS)}")
        shape = quick_shape(DATASETS[name]) if args.quick else DATASETS[name]
        if name in overrides:
            shape = DatasetShape(shape.name, shape.sizes, int(overrides.pop(name)), shape.crop, shape.batch)
        shapes.append(shape)
    if overrides:
        parser.error(f"--rows: {', '.join(overrides)} not in --datasets")
    args.shapes = shapes
    import yaml

    args.ratio_set = [(key, yaml.safe_load(value)) for key, value in (item.split("=", 1) for item in args.ratio_set)]
    args.worker_counts = [int(value) for value in args.workers.split(",")]
    if max(args.worker_counts) > args.node_cpus:
        parser.error("--workers: more than --node-cpus")
    args.mode_list = [{"node": NODE_COPY, "private": PER_WORKER}[mode] for mode in args.modes.split(",")]
    return args


def run(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import ray
    from ray.cluster_utils import Cluster

    from fusionlab.train.local_ray import RAY_PROCESS_ENV

    for name, value in RAY_PROCESS_ENV.items():  # as ~/fusionlab.env sets it on a cluster's nodes
        os.environ.setdefault(name, value)

    from fusionlab.data.manifest import Manifest

    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="ingest-memory-"))
    temp_dir = tempfile.mkdtemp(prefix="rim-", dir="/tmp")  # Ray's socket paths have a length limit
    (Path(temp_dir) / "ray").mkdir()
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp_dir  # Cluster writes its address under $RAY_TMPDIR/ray: its own
    result: dict[str, Any] = {"datasets": {}, "cells": [], "memory_targets": {}, "epoch_ratio": None,
                              "settings": {"loader_workers": args.loader_workers, "interval": args.interval,
                                           "node_cpus": args.node_cpus, "quick": args.quick}}
    cluster = None
    try:
        data_paths = {}
        for shape in args.shapes if args.cells else []:
            progress(f"writing {shape.name}: {shape.rows} rows of {', '.join(f'{h}x{w}' for h, w in shape.sizes)}")
            data_paths[shape.name] = scratch / shape.name
            manifest = write_dataset(data_paths[shape.name], shape)
            manifest = Manifest.load(data_paths[shape.name])
            result["datasets"][shape.name] = {
                "rows": shape.rows, "sizes": ", ".join(f"{h}×{w}" for h, w in shape.sizes),
                "image_size": manifest.image_size, "crop": list(shape.crop), "batch": shape.batch,
                "parquet_bytes": sum(shard.bytes for shard in manifest.shards("train")),
                "encoded_bytes": sum(encoded_row_bytes(size) for size in row_sizes(shape, shape.rows)),
                "ipc_bytes": None}
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": False, "temp_dir": temp_dir})
        node = cluster.add_node(num_cpus=args.node_cpus, resources={NODE: 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        raylet = node.all_processes["raylet"][0].process.pid
        idle = node_processes(raylet)
        progress(f"cluster up: head + {NODE} ({args.node_cpus} CPUs; its processes: {', '.join(idle)})")
        if args.epoch_ratio:
            result["epoch_ratio"] = epoch_ratio(scratch, args)
        for shape in args.shapes if args.cells else []:
            points: dict[str, dict[int, float]] = {mode: {} for mode in args.mode_list}
            for index, workers in enumerate(args.worker_counts):
                for mode in (args.mode_list if index % 2 == 0 else args.mode_list[::-1]):
                    progress(f"{shape.name}, {workers} worker(s), {mode} ...")
                    cell = run_cell(scratch, data_paths[shape.name], shape, workers, mode, raylet, idle, args)
                    result["cells"].append(cell)
                    points[mode][workers] = cell["peak_over_idle"]
                    if cell["ipc_bytes"]:
                        result["datasets"][shape.name]["ipc_bytes"] = cell["ipc_bytes"]
                    progress(f"  idle {mib(cell['idle'])} MiB, peak {mib(cell['peak'])} MiB "
                             f"(+{mib(cell['peak_over_idle'])}), "
                             f"{cell['rows_per_s_worker']:.2f} samples/s per worker, {cell['wall_s']:.0f} s; "
                             f"largest files at peak: "
                             + "; ".join(f"{Path(p).name} {mib(v)}" for p, v in cell["largest_files"])
                             + "; by role (processes, private + shared anon MiB): "
                             + "; ".join(f"{role} {count}, {mib(value)}" for role, (count, value)
                                         in sorted(cell["peak_roles"].items())))
            info = result["datasets"][shape.name]
            if NODE_COPY in points and points[NODE_COPY]:
                result["memory_targets"][shape.name] = memory_target(
                    info["ipc_bytes"] or info["encoded_bytes"], points[NODE_COPY], points.get(PER_WORKER))
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    result["seconds"] = time.perf_counter() - started
    print(markdown(result))
    if args.plot:
        print(f"\nplot: {args.plot}" if plot(result, args.plot) else "\nno plot: matplotlib is not installed")
    print(f"\n{result['seconds']:.0f} s in all; {args.loader_workers} loader process(es) per worker; memory sampled "
          f"every {args.interval} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    run()
