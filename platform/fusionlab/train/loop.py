"""The per-worker training loop, one for every task (``task.Task``). It knows nothing of Tune; it reaches Ray only
through its WorkerContext."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from fusionlab.config import Config
from fusionlab.config.identity import checkpoint_changes, refuse_unsafe
from fusionlab.data import Manifest

from .checkpoint import save_checkpoint
from .context import WorkerContext
from .device import configure_backends, maybe_compile
from .selection import Selection, evaluation_prefix, selection_tags
from .steps import model_statistics, unwrap
from .task import task_for

EXAMPLES = 4  # evaluation samples kept for the final plots (and translation's per-epoch image grid)
# Seconds, logged per epoch: training, evaluation, writing the checkpoint, and (at a start's first epoch) the time from
# the launch to it: the worker group's start, the model's build and the restore.
TRAIN_TIME, EVALUATE_TIME, CHECKPOINT_TIME, STARTUP_TIME = "time/train_s", "time/evaluate_s", "time/checkpoint_s", \
    "time/startup_s"


def seed_rank(seed: int, rank: int) -> None:
    """After the identical initial weights, each worker draws its own random numbers (dropout masks, a model's
    random choices): rank 0 goes on with ``seed``'s stream, as a one-worker run does, and rank r > 0 with a stream of
    its own derived from ``(seed, rank)``; the same seed and world size give the same masks again."""
    if rank > 0:
        torch.manual_seed(int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> 1))


def checkpoint_every(config: Config) -> int:
    """``train.checkpoint_every``, by default the evaluation's cadence: a checkpoint between two evaluations would
    only be resumed from, at the price of writing the whole model and optimiser (1.0-1.4 GB for ResNet-101)."""
    return config.train.checkpoint_every or config.train.val_every


def train_loop(payload: dict[str, Any], ctx: WorkerContext) -> None:
    """Train ``payload["config"]``; rank 0 tracks to MLflow at ``payload["tracking_uri"]``."""
    config = Config.model_validate(payload["config"])
    manifest = Manifest.load(config.data.path)
    task = task_for(config, manifest)
    torch.manual_seed(config.train.seed)  # identical initial weights on every worker (DDP also broadcasts them)
    configure_backends(config.train, ctx.device)
    model, optimizer = task.build(ctx.device)
    seed_rank(config.train.seed, ctx.rank)
    start_epoch, history = 0, []
    selection = Selection.for_run(config, task.metric, lower_is_better=task.lower_is_better,
                                  keep_state=ctx.rank == 0)
    state = ctx.restore()
    if state is not None:
        refuse_unsafe(checkpoint_changes(state, config, manifest.digest), config.run_name(),
                      f"its checkpoint of epoch {state['epoch']}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        task.load_extra_state(state)
        start_epoch, history = state["epoch"] + 1, state["history"]
        selection.load_state_dict(state.get("selection"), state["epoch"], model, ctx.load_kept)
    del state  # the restored tensors: not kept for the whole run beside the live ones
    model = maybe_compile(ctx.prepare_model(model), config.train)
    task.prepare(ctx)
    core = unwrap(model)

    tracker = None
    if ctx.rank == 0:
        from fusionlab.tracking import RunTracker
        from fusionlab.tracking.runs import run_tags

        tags = {**run_tags(manifest, core), **task.run_tags(), **selection_tags(config), **payload.get("tags", {})}
        tracker = RunTracker.open(payload["tracking_uri"], config, payload.get("parent_run_id"), tags,
                                  payload.get("launch"))
        tracker.catch_up(history)  # epochs checkpointed before an interruption but not yet logged

    if history and start_epoch >= config.train.epochs:
        # Restored after its last epoch (a sweep killed between the run's end and Tune recording it): report the
        # final metrics again, so the relaunched trial ends with its result instead of an empty one.
        ctx.report(history[-1], None, history[-1]["epoch"], selection.checkpoint_score(history[-1]["epoch"]))
    for epoch in range(start_epoch, config.train.epochs):
        started, started_at = time.perf_counter(), time.time()
        metrics: dict[str, Any] = {"epoch": epoch, **task.train_epoch(model, optimizer, ctx, epoch)}
        metrics[TRAIN_TIME] = time.perf_counter() - started
        if epoch == start_epoch and "started_at" in payload:  # this start's set-up: worker group, model, restore
            metrics[STARTUP_TIME] = started_at - payload["started_at"]
        last = epoch == config.train.epochs - 1
        selected = False
        if (epoch + 1) % config.train.val_every == 0 or last:
            started = time.perf_counter()
            evaluation = task.evaluate(model, ctx, keep_examples=EXAMPLES if ctx.rank == 0 else 0,
                                       prefix=evaluation_prefix(config))
            metrics.update(evaluation.metrics)
            metrics[EVALUATE_TIME] = time.perf_counter() - started
            selected = selection.offer(epoch, evaluation.metrics, core, final=last, **evaluation.kept)
            selected = selected and selection.mode != "last"
            if tracker is not None:
                task.log_epoch_extras(tracker, epoch, core, evaluation)
        metrics.update(model_statistics(core))
        history.append(metrics)
        checkpoint_dir = None
        # A checkpoint every train.checkpoint_every epochs (default: at each evaluation), at the last, and at each
        # newly selected epoch: that one is kept, and is where the selected weights are read back from on resume.
        if ctx.rank == 0 and ((epoch + 1) % checkpoint_every(config) == 0 or last or selected):
            started = time.perf_counter()
            checkpoint_dir = ctx.new_checkpoint_dir()
            save_checkpoint(checkpoint_dir, {"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                                             **task.extra_state(), "epoch": epoch, "history": history,
                                             "selection": selection.state_dict(epoch),
                                             "config": config.model_dump(mode="json", by_alias=True),
                                             "manifest_sha256": manifest.digest})
            metrics[CHECKPOINT_TIME] = time.perf_counter() - started  # to local disk; the upload runs behind
        # Handed over before the epoch is logged (its upload may still run: a crash before it ends resumes from the
        # checkpoint before, and the epoch trained again is not logged twice).
        ctx.report(metrics, checkpoint_dir, epoch, selection.checkpoint_score(epoch))
        if tracker is not None:
            tracker.log_epoch(metrics)

    if tracker is not None:
        # The selected model, its test scores and plots, once: again only if new epochs were trained, or if the
        # last attempt failed after its final checkpoint (while scoring test or logging the model).
        if start_epoch < config.train.epochs or not tracker.final_logged:
            selection.load_into(core)
            final = selection.final_metrics()
            test_split = config.data.test_split
            if selection.mode != "best_test" and test_split and test_split in manifest.splits:
                final.update(task.test_scores(core, ctx.device))
            final.update(task.multi_scale_scores(core, ctx.device))
            tracker.log_metrics(final, step=selection.final_step(config.train.epochs))
            tracker.log_final(task.figures(core, selection.extras), task.predictor(core))
            tracker.mark_final_logged()
        tracker.close()
