"""What the training loop needs from where it runs: data, distributed sums, checkpoints, reporting.

``RayWorkerContext`` is a Ray Train worker (Train V2); ``LocalContext`` runs the same loop in this process without
Ray (one worker), for debugging and fast tests.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from fusionlab.config import Config
from fusionlab.data.device_rows import DeviceRows, compact_loader
from fusionlab.data.node_cache import default_cache_dir
from fusionlab.data.torch_dataset import EpochOrder, ShardDataset, loader_options, loader_workers
from fusionlab.data.transforms import Augment
from fusionlab.staging import staging_path, sweep

from .checkpoint import CHECKPOINT_SCORE, checkpoint_name, load_checkpoint
from .prepare import check_batch_fits
from .progress import format_progress
from .val_parts import ValBatches

Batch = dict[str, torch.Tensor]


class WorkerContext(Protocol):
    rank: int
    world_size: int
    device: torch.device

    def prepare_model(self, model: nn.Module) -> nn.Module: ...
    def train_batches(self, epoch: int) -> Iterable[Batch]: ...
    def val_batches(self) -> Iterable[Batch]: ...  # the per-epoch evaluation: selection.evaluation_split
    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor: ...
    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor: ...
    def restore(self) -> dict[str, Any] | None: ...
    def load_kept(self, epoch: int) -> dict[str, Any]: ...  # the kept checkpoint of a selected epoch
    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None, epoch: int, score: float) -> None: ...


def training_augment(config: Config, image_size: tuple[int, int] | None) -> Augment:
    crop = config.data.crop or image_size
    if crop is None:
        raise ValueError("data.crop is required for datasets whose images vary in size")
    data = config.data
    return Augment(crop=tuple(crop), scale_range=data.scale_range, hflip=data.hflip,
                   min_short_side=data.min_short_side, resize=data.resize, pad=data.pad)


def capped(batches: Iterable[Batch], cap: int | None) -> Iterator[Batch]:
    """``batches``, or their first ``cap`` (``train.smoke_steps``); the source is closed when the cap ends it, so a
    feed that makes batches ahead stops this epoch's instead of handing them to the next."""
    iterator = iter(batches)
    try:
        for _ in itertools.count() if cap is None else range(cap):
            try:
                yield next(iterator)
            except StopIteration:
                return
    finally:
        getattr(iterator, "close", lambda: None)()


def training_feed(config: Config, device: torch.device, rank: int = 0, world_size: int = 1,
                  cache_dir: str | Path | None = None, cpus: float | None = None
                  ) -> tuple[ShardDataset, EpochOrder, torch.utils.data.DataLoader, DeviceRows]:
    """Worker ``rank`` of ``world_size``'s training rows: the split (the node's copy in ``cache_dir``, if given),
    its part of each epoch's order (``EpochOrder``), one DataLoader for the run (its ``data.num_workers`` processes,
    if any, persist and decode the compact rows), and ``DeviceRows`` making them batches on ``device``.

    The loader has its own generator: without one it draws its base seed from torch's global generator, shifting
    every dropout mask after it."""
    data = config.data
    dataset = ShardDataset(data.path, data.train_split, data.modalities, seed=config.train.seed,
                           cache_dir=cache_dir, compact=True)
    dataset.augment = training_augment(config, dataset.manifest.image_size)
    order = EpochOrder(len(dataset), config.train.seed, rank, world_size)
    loader = compact_loader(dataset, batch_size=config.train.batch_size, sampler=order, drop_last=True,
                            generator=torch.Generator(),
                            **loader_options(loader_workers(data.num_workers, device, cpus), device))
    return dataset, order, loader, DeviceRows(dataset, device)


SCORE_FILE = "score.json"  # a local checkpoint's rank for keeping (Ray keeps it in its own state)


def _score(checkpoint: Path) -> float:
    try:
        return float(json.loads((checkpoint / SCORE_FILE).read_text())[CHECKPOINT_SCORE])
    except (OSError, ValueError, KeyError):  # written before checkpoints were ranked: the least kept
        return -math.inf  # below UNRANKED


class LocalContext:
    rank, world_size = 0, 1

    def __init__(self, config: Config, checkpoint_root: Path, echo: bool = True):
        check_batch_fits(config, workers=1)
        self.config = config
        self.echo = echo  # print an epoch line per report, as the Ray driver does
        self.device = torch.device("cuda" if torch.cuda.is_available() and config.resources.use_gpu else "cpu")
        self.train_set, self.train_order, self.train_loader, self.train_rows = training_feed(config, self.device)
        self.val_rows = ValBatches(config, device=self.device)
        self.checkpoint_root = Path(checkpoint_root)
        self.reports: list[dict[str, Any]] = []

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model.to(self.device)

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        self.train_order.epoch = epoch  # the loader's indices are drawn when it is iterated
        return capped(self.train_rows.batches(self.train_loader), self.config.train.smoke_steps)

    def val_batches(self) -> Iterator[Batch]:
        return capped(self.val_rows, self.config.train.smoke_steps)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def epoch_checkpoints(self) -> list[Path]:
        """The kept checkpoint directories, oldest first."""
        epochs = [path for path in self.checkpoint_root.glob("epoch_*") if path.name[len("epoch_"):].isdigit()]
        return sorted(epochs, key=lambda path: int(path.name[len("epoch_"):]))

    def restore(self) -> dict[str, Any] | None:
        epochs = self.epoch_checkpoints()
        return load_checkpoint(epochs[-1]) if epochs else None

    def load_kept(self, epoch: int) -> dict[str, Any]:
        return load_checkpoint(self.checkpoint_root / checkpoint_name(epoch))

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None, epoch: int, score: float) -> None:
        self.reports.append(metrics)
        if self.echo:
            print(format_progress(metrics, self.config.train.epochs), flush=True)
        if checkpoint_dir is not None:
            (checkpoint_dir / SCORE_FILE).write_text(json.dumps({CHECKPOINT_SCORE: score}))
            target = self.checkpoint_root / checkpoint_name(epoch)
            target.parent.mkdir(parents=True, exist_ok=True)
            checkpoint_dir.rename(target)
            self.drop_old_checkpoints()

    def drop_old_checkpoints(self) -> None:
        """Keep what Ray's ``CheckpointConfig(num_to_keep=train.keep_checkpoints)`` with a score keeps: the best
        ranked (``Selection.checkpoint_score``; the newer first among equals) and always the latest."""
        epochs = self.epoch_checkpoints()
        ranked = sorted(epochs, key=lambda path: (_score(path), int(path.name[len("epoch_"):])), reverse=True)
        keep = set(ranked[:self.config.train.keep_checkpoints]) | set(epochs[-1:])
        for old in epochs:
            if old not in keep:
                shutil.rmtree(old)

    def new_checkpoint_dir(self) -> Path:
        self.checkpoint_root.mkdir(parents=True, exist_ok=True)
        sweep(self.checkpoint_root)  # what a killed run left half-written here
        staged = staging_path(self.checkpoint_root / "checkpoint")
        staged.mkdir()
        return staged


class RayWorkerContext:
    """Inside ``train_fn_per_worker``: DDP, ``ray.train.report`` / ``get_checkpoint``.

    Training and evaluation rows come from the node's one copy of each split (``data.node_cache``: written once by
    the node's first worker, memory-mapped by all), decoded on this node by this worker's DataLoader (and its
    ``data.num_workers`` processes, which make the next batches ahead): its part of the in-process path's order, with
    the same augmentation draws (``EpochOrder``); its part of the evaluation split (``val_parts.ValBatches``), the
    workers' parts holding every image once.
    """

    def __init__(self, config: Config):
        import ray.train
        import ray.train.torch

        self.config = config
        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()
        cache = config.data.node_cache or default_cache_dir()
        self.train_set, self.train_order, self.train_loader, self.train_rows = training_feed(
            config, self.device, self.rank, self.world_size, cache, cpus=config.resources.cpus_per_worker)
        self._val = ValBatches(config, self.rank, self.world_size, self.device, cache_dir=cache,
                               cpus=config.resources.cpus_per_worker)
        self._checkpoint = ray.train.get_checkpoint()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def train_batches(self, epoch: int) -> Iterable[Batch]:
        self.train_order.epoch = epoch
        return capped(self.train_rows.batches(self.train_loader), self.config.train.smoke_steps)

    def val_batches(self) -> Iterable[Batch]:
        return capped(self._val, self.config.train.smoke_steps)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            torch.distributed.all_reduce(tensor)
        return tensor

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every worker's ``tensor`` concatenated along dim 0 in rank order (sizes may differ: FID features)."""
        if self.world_size == 1:
            return tensor
        parts: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(parts, tensor.cpu())
        return torch.cat(parts).to(tensor.device)

    def restore(self) -> dict[str, Any] | None:
        state = None
        if self._checkpoint is not None:
            with self._checkpoint.as_directory() as directory:  # every worker reads its own view, no shared copy
                state = load_checkpoint(directory)
        return state

    def load_kept(self, epoch: int) -> dict[str, Any]:
        import ray.train

        storage = ray.train.get_context().get_storage()
        kept = ray.train.Checkpoint(storage.build_checkpoint_path_from_name(checkpoint_name(epoch)),
                                    storage.storage_filesystem)
        with kept.as_directory() as directory:
            return load_checkpoint(directory)

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None, epoch: int, score: float) -> None:
        """Rank 0's checkpoint goes to the run's storage under its epoch's name, before training goes on or in the
        background (``resources.checkpoint_upload``), then its local copy is deleted; Ray keeps the best ranked by
        ``score`` and the latest (``run_ray``'s CheckpointConfig)."""
        import ray.train

        if checkpoint_dir is None:
            ray.train.report(metrics)
            return
        mode = ray.train.CheckpointUploadMode[self.config.resources.checkpoint_upload.upper()]
        ray.train.report({**metrics, CHECKPOINT_SCORE: score}, checkpoint=ray.train.Checkpoint.from_directory(
            str(checkpoint_dir)), checkpoint_dir_name=checkpoint_name(epoch), checkpoint_upload_mode=mode,
            delete_local_checkpoint_after_upload=True)

    def new_checkpoint_dir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="fusionlab-ckpt-"))
