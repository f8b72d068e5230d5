"""A full-size rehearsal of the NYUDv2 grid's first run on a cluster, on one machine: the production topology, the
paper grid's own file, NYUDv2-sized data, ResNet-101 weights, a worker node killed mid-epoch.

    python bench/cluster_rehearsal.py                      # defaults: 2 epochs, 1 step and 1 eval batch each
    python bench/cluster_rehearsal.py --smoke-steps 2 --batch-size 6 --out /tmp/rehearsal

What runs:
- **data**: NYUDv2-shaped synthetic scenes, 716 train + 79 val / 654 test at 480×640 (uint8 RGB, uint16 depth in mm,
  40 classes' worth of labels drawn from the synthetic classes), written by ``fusionlab.data.synthetic``; and a
  SUN RGB-D-shaped variant whose images vary in size around 530×730 (``--sun``, one cell: variable-size validation).
- **weights**: a torchvision-format ResNet-101 file (random values) at ``weights/resnet101-imagenet.pth`` beside the
  grid, named by the grid's own relative path.
- **the grid**: ``experiments/nyudv2_refinenet.yaml`` as it is, its CEN and late-fusion ResNet-101 cells (118M and
  236M parameters), with ``--set`` overrides only for what a rehearsal must change: ``train.epochs``,
  ``train.smoke_steps`` (the named smoke switch, in the recipe label), ``data.path``, ``model.pretrained_version``
  (random weights are no torchvision release), ``resources`` (the loopback cluster's slot, CPU, the bucket) and,
  where asked, ``train.batch_size``: the papers' batch of 6 at 500×500 needs about 3.5 GB per image on a CPU
  (20 GB a worker), more than this machine has for two cells.
- **the topology** (tests/production.py): PostgreSQL with a password, an S3 server (moto) with a bucket, a real
  ``mlflow server`` on both, and a ``ray.cluster_utils.Cluster`` shaped like cluster/aws-gpu.yaml (a head with the
  trial drivers' resource and no training slot, two worker nodes with one ``slot`` each). The cells log straight to
  PostgreSQL (the password only in ``MLFLOW_TRACKING_URI``, as the YAML exports it), models go to the bucket
  (``FUSIONLAB_ARTIFACT_ROOT``), checkpoints (``resources.storage_path``) to a directory standing for the cluster's
  NFS export, or with ``--checkpoints s3`` to the bucket (moto holds every object in memory: too much here beside a
  12 GB worker; tests/cluster/test_production_grid.py resumes a cell from the bucket).
- **the failure**: once a cell has logged its first epoch, the node hosting its worker is killed; the cell resumes on
  the other node from its last checkpoint in the bucket.

Printed (and written to ``OUT/rehearsal.json``): per cell its parameters, peak RSS of each Train worker process
(sampled every second), seconds per training step, checkpoint bytes (in the bucket) and seconds to write one,
start-up (launch to first step, per start), bytes hashed per cell, starts; and the scan of every MLflow param, tag,
artifact and checkpoint object, the workdir, Ray's logs and the printed output for the database password.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "platform"))
sys.path.insert(0, str(REPO / "tests"))  # the production topology's fixtures (tests/production.py)

GRID = REPO / "experiments" / "nyudv2_refinenet.yaml"
CELLS = ("CEN, ResNet-101", "Late fusion, ResNet-101")
SUN_GRID = "sunrgbd-shaped-rehearsal"
RESNET101 = (3, 4, 23, 3)


def write_weights(path: Path) -> None:
    """torchvision's ResNet-101 layout with values a trained network could have: He-scaled convolutions, BatchNorm
    statistics of unit variance, each block's last BN scaled down (the references freeze BN, so with unit-variance
    random convolutions and no damping the 33 residual blocks would overflow fp32 before the first loss)."""
    import torch

    from imagenet_files import torchvision_resnet_state

    state = torchvision_resnet_state(RESNET101)
    for key, value in state.items():
        if value.dim() == 4:  # a convolution: He's scale for its fan-in
            value.mul_((2.0 / value[0].numel()) ** 0.5)
        elif key.endswith("running_mean") or key.endswith(".bias"):
            value.mul_(0.1)
        elif key.endswith("running_var"):
            value.fill_(1.0)
        elif key.endswith("bn3.weight") or key.endswith("downsample.1.weight"):
            value.mul_(0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def write_sun_shaped(out: Path, train: int, val: int, test: int, seed: int = 0) -> None:
    """Scenes of SUN RGB-D's varied sizes (around 530×730), written through the dataset writer as the converter does."""
    import numpy as np

    from fusionlab.data.manifest import LabelSpec, Manifest, depth_mm_spec, rgb_spec
    from fusionlab.data.sample import Sample
    from fusionlab.data.synthetic import IGNORE_INDEX, SYNTHETIC_CLASSES, render_scene
    from fusionlab.data.writer import DatasetWriter

    sizes = [(530, 730), (531, 681), (441, 591), (427, 561), (530, 730)]
    manifest = Manifest(name="sunrgbd-shaped", task="segmentation",
                        modalities={"rgb": rgb_spec(), "depth": depth_mm_spec()},
                        label=LabelSpec(SYNTHETIC_CLASSES, ignore_index=IGNORE_INDEX),
                        source={"generator": "bench/cluster_rehearsal.py", "seed": seed})
    with DatasetWriter(out, manifest) as writer:
        for code, (split, count) in enumerate((("train", train), ("val", val), ("test", test))):
            for index in range(count):
                rng = np.random.default_rng([seed, code, index])
                rgb, depth, label = render_scene(rng, *sizes[index % len(sizes)])
                writer.write(Sample(f"{split}-{index:05d}", split, {"rgb": rgb, "depth": depth}, label))


def rehearsal_grid(project: Path, cells: tuple[str, ...], max_concurrent: int | None, name: str | None = None
                   ) -> Path:
    """The paper grid's file with only ``cells`` kept (and ``grid.max_concurrent``): every other key as it is."""
    tree = yaml.safe_load(GRID.read_text())
    tree["cells"] = [cell for cell in tree["cells"] if cell["label"] in cells]
    if max_concurrent:
        tree["grid"]["max_concurrent"] = max_concurrent
    if name:
        tree["grid"]["name"] = name
    path = project / f"{name or GRID.stem}.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


class RssSampler:
    """Peak RSS of every Ray Train worker process, sampled every second from a thread."""

    def __init__(self):
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.wait(1.0):
            for process in psutil.process_iter(["cmdline", "memory_info"]):
                cmdline = " ".join(process.info["cmdline"] or [])
                if cmdline.startswith("ray::RayTrainWorker") and process.info["memory_info"]:
                    rss = process.info["memory_info"].rss
                    self.peaks[process.pid] = max(self.peaks.get(process.pid, 0), rss)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--smoke-steps", type=int, default=1, help="train.smoke_steps: steps and eval batches/epoch")
    parser.add_argument("--batch-size", type=int, default=1, help="train.batch_size (the grid's is 6; see above)")
    parser.add_argument("--max-concurrent", type=int, default=1, help="cells training at once (memory)")
    parser.add_argument("--train", type=int, default=716)
    parser.add_argument("--val", type=int, default=79)
    parser.add_argument("--test", type=int, default=654)
    parser.add_argument("--sun", action="store_true", help="also a CEN cell on the SUN RGB-D-shaped variant")
    parser.add_argument("--checkpoints", choices=["s3", "shared-dir"], default="shared-dir",
                        help="resources.storage_path: the bucket, or a directory as on NFS (see checkpoint_storage)")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    out = args.out or Path(tempfile.mkdtemp(prefix="fl-rehearsal-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"rehearsal in {out}", flush=True)
    from fusionlab.data.synthetic import write_synthetic

    data = out / "data" / "nyudv2-shaped"
    if not (data / "manifest.json").exists():
        started = time.time()
        write_synthetic(data, train=args.train, val=args.val, test=args.test, size=(480, 640), seed=0)
        print(f"data: {args.train}+{args.val}/{args.test} scenes at 480x640 in {time.time() - started:.0f} s",
              flush=True)
    sun = out / "data" / "sunrgbd-shaped"
    if args.sun and not (sun / "manifest.json").exists():
        write_sun_shaped(sun, train=12, val=4, test=10)
    project = out / "project"
    weights = project / "weights" / "resnet101-imagenet.pth"
    if not weights.exists():
        write_weights(weights)
    grid_path = rehearsal_grid(project, CELLS, args.max_concurrent)

    from production import mlflow_on, postgres_cluster, require_postgres, s3_server

    with contextlib.ExitStack() as stack:
        postgres = stack.enter_context(postgres_cluster(require_postgres()))
        s3 = stack.enter_context(s3_server(out))
        server = stack.enter_context(mlflow_on(postgres, s3, out))
        result = rehearse(args, out, project, grid_path, data, sun if args.sun else None, postgres, s3, server)
    (out / "rehearsal.json").write_text(json.dumps(result, indent=2))
    print_table(result)
    return 0 if result["ok"] else 1


def checkpoint_storage(args, out: Path, s3) -> str:
    """Where the cells' checkpoints go: the bucket, or a directory standing for the cluster's shared filesystem
    (moto's S3 server keeps every object in memory, about three times over while it assembles a multipart upload;
    beside a ResNet-101 late-fusion worker's 12 GB that is more than this machine has)."""
    return f"s3://{s3.bucket}/ray_results" if args.checkpoints == "s3" else str(out / "shared" / "ray_results")


def rehearse(args, out: Path, project: Path, grid_path: Path, data: Path, sun: Path | None, postgres, s3, server):
    from fusionlab.cli import main as fusionlab
    from loopback_cluster import loopback_cluster, remove_a_worker_node_when, running_cell_past_an_epoch

    password = postgres.password
    database = postgres.uri.replace(f"{postgres.user}@", f"{postgres.user}:{password}@")
    os.environ.update({**s3.env(), "MLFLOW_TRACKING_URI": database,
                       "FUSIONLAB_ARTIFACT_ROOT": f"s3://{s3.bucket}/mlartifacts"})
    workdir = out / "runs"
    overrides = [f"train.epochs={args.epochs}", f"train.smoke_steps={args.smoke_steps}",
                 f"train.batch_size={args.batch_size}", "train.val_every=1", f"data.path={data}",
                 "model.pretrained_version=any", "resources.use_gpu=false", "resources.cpus_per_worker=1",
                 "resources.worker_resources={slot: 1}", f"resources.storage_path={checkpoint_storage(args, out, s3)}"]
    killed: dict = {}
    log = out / "grid.log"
    started = time.time()
    with loopback_cluster(log_to_driver=False) as (cluster, nodes, temp_dir):
        # once a cell has logged its first epoch (the cells run one at a time: at_once=1), mid-way through its second
        watcher = remove_a_worker_node_when(lambda: running_cell_past_an_epoch(database, "nyudv2-refinenet", 1),
                                            cluster, nodes, killed, timeout=7200)
        with RssSampler() as sampler, open(log, "w") as printed, contextlib.redirect_stdout(printed):
            cwd = os.getcwd()
            os.chdir(project)  # the grid names its weights relative to the project
            try:
                rc = fusionlab(["--workdir", str(workdir), "grid", grid_path.name,
                                *sum((["--set", value] for value in overrides), [])])
                sun_rc = None
                if sun is not None:  # variable-size images through the same cell: validation must not crash
                    # its own storage: the cell's run name is the NYUDv2 cell's, and a run found under its name in
                    # storage_path is resumed (or, trained on other data, refused)
                    sun_overrides = [f"data.path={sun}" if o.startswith("data.path=") else o for o in overrides]
                    sun_overrides.append(f"resources.storage_path={checkpoint_storage(args, out, s3)}-sunrgbd")
                    sun_grid = rehearsal_grid(project, ("CEN, ResNet-101",), 1, name=SUN_GRID)
                    sun_rc = fusionlab(["--workdir", str(workdir), "grid", sun_grid.name,
                                        *sum((["--set", value] for value in sun_overrides), [])])
            finally:
                os.chdir(cwd)
        watcher.join(timeout=5)
        wall = time.time() - started
        ray_logs = [str(p) for p in Path(temp_dir).rglob("*") if p.is_file() and not p.is_symlink()
                    and password.encode() in p.read_bytes()]
    return measure(args, workdir, ray_logs, log, server, s3, password, rc, sun_rc, killed, sampler.peaks, wall)


def measure(args, workdir, ray_logs, log, server, s3, password, rc, sun_rc, killed, peaks, wall):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.url)
    experiment = client.get_experiment_by_name("nyudv2-refinenet")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    keys = s3.keys()
    sizes = {item["Key"]: item["Size"] for page in s3.client().get_paginator("list_objects_v2").paginate(
        Bucket=s3.bucket) for item in page.get("Contents", [])}
    cells = {}
    for run in runs:
        if "mlflow.parentRunId" not in run.data.tags:
            continue
        name = run.info.run_name
        history = {key: client.get_metric_history(run.info.run_id, key)
                   for key in ("time/train_s", "time/startup_s", "time/checkpoint_s", "train/loss")}
        if args.checkpoints == "s3":
            checkpoints = sorted({key.split("/")[2] for key in keys if key.startswith(f"ray_results/{name}/epoch_")})
            checkpoint_bytes = [sum(size for key, size in sizes.items()
                                    if key.startswith(f"ray_results/{name}/{c}/")) for c in checkpoints]
        else:
            root = workdir.parent / "shared" / "ray_results" / name
            checkpoints = sorted(path.name for path in root.glob("epoch_*"))
            checkpoint_bytes = [sum(f.stat().st_size for f in (root / c).rglob("*") if f.is_file())
                                for c in checkpoints]
        cells[name] = {
            "status": run.info.status, "parameters": int(run.data.tags.get("fusionlab.parameters", 0)),
            "recipe": run.data.tags.get("fusionlab.recipe"),
            "starts": int(run.data.tags.get("fusionlab.starts", 1)),
            "epochs logged": sorted(m.step for m in history["train/loss"]),
            "s per step": [round(m.value / args.smoke_steps, 1) for m in history["time/train_s"]],
            "start-up s": [round(m.value, 1) for m in history["time/startup_s"]],
            "checkpoint write s": [round(m.value, 1) for m in history["time/checkpoint_s"]],
            "checkpoints in the bucket": checkpoints,
            "checkpoint bytes": checkpoint_bytes,
            "data verified": run.data.tags.get("fusionlab.data_verified", ""),
        }
    secret = password.encode()
    leaks = {
        "params/tags": [(run.info.run_name, key) for run in runs
                        for key, value in {**run.data.params, **run.data.tags}.items() if password in value],
        "bucket objects (artifacts, checkpoints)": [key for key in keys if secret in s3.client().get_object(
            Bucket=s3.bucket, Key=key)["Body"].read()],
        "workdir and checkpoint files": [str(p) for root in (workdir, workdir.parent / "shared") for p in
                                         root.rglob("*") if p.is_file() and secret in p.read_bytes()],
        "Ray logs": ray_logs,
        "printed output": [str(log)] if secret in log.read_bytes() else [],
    }
    peaks_gib = sorted(round(value / 2**30, 2) for value in peaks.values())
    ok = (rc == 0 and sun_rc in (None, 0) and killed.get("removed") and len(cells) == len(CELLS)
          and all(c["status"] == "FINISHED" for c in cells.values()) and not any(leaks.values()))
    return {"ok": ok, "rc": rc, "sun rc": sun_rc, "wall s": round(wall), "killed": killed, "cells": cells,
            "worker peak RSS GiB": peaks_gib, "password found in": leaks,
            "settings": {"epochs": args.epochs, "smoke_steps": args.smoke_steps, "batch_size": args.batch_size,
                         "checkpoints": args.checkpoints,
                         "max_concurrent": args.max_concurrent, "train/val/test": [args.train, args.val, args.test]}}


def print_table(result) -> None:
    print(f"\nrehearsal: {'OK' if result['ok'] else 'FAILED'} in {result['wall s']} s; settings {result['settings']}")
    print(f"killed: {result['killed']}")
    print(f"Train worker processes' peak RSS (GiB): {result['worker peak RSS GiB']}")
    for name, cell in result["cells"].items():
        print(f"- {name}: {cell['status']}, {cell['parameters'] / 1e6:.1f}M parameters, starts {cell['starts']}, "
              f"epochs logged {cell['epochs logged']}")
        print(f"  s/step {cell['s per step']}, start-up s {cell['start-up s']}, checkpoint write s "
              f"{cell['checkpoint write s']}, checkpoints {cell['checkpoints in the bucket']} of "
              f"{[round(b / 2**20) for b in cell['checkpoint bytes']]} MiB")
        print(f"  data verified: {cell['data verified']}")
    print(f"password found in: {result['password found in']}")


if __name__ == "__main__":
    sys.exit(main())
