"""Search efficiency on synthetic data: Optuna TPE + successive halving (ASHA) vs the full CEN λ × θ × portion grid.

The question (from the issue): how many *trial-epochs* does Optuna TPE with ASHA-style early stopping need to come
within 1 mIoU point (0.01 absolute) of the best cell of the full grid over the same ranges, against the grid's
trial-epochs?

    python bench/search_efficiency.py                       # defaults: 3x3x2 grid, 6 epochs, 3 Optuna seeds
    python bench/search_efficiency.py --epochs 10 --train 128 --seeds 5 --plot /tmp/search.png

The defaults (64 train / 32 val scenes at 48x64, resnet_mini, 6 epochs per trial, one torch thread) take about 4-8
minutes on a 2-core CPU machine (about 1.2 s per trial-epoch; the most when no Optuna run reaches the target before
its cap).

What runs
    1. A synthetic RGB-D dataset (``fusionlab.data.synthetic``) is written to a temporary directory.
    2. Grid: every cell of λ (``model.params.lambda``, log-spaced over [1e-4, 1e-1]) × θ (``model.params.threshold``,
       log-spaced over [5e-3, 5e-2]) × portion (``model.params.portion``, linear over [0.1, 0.5]) trains for
       ``--epochs`` epochs. A cell's score is its val/miou after the last epoch (``--score best``: the best epoch).
       The grid costs cells × epochs trial-epochs: it must run every cell to know which one is best.
    3. Optuna: a seeded ``TPESampler`` over the same ranges (λ and θ log-uniform, portion uniform) with
       ``optuna.pruners.SuccessiveHalvingPruner`` (min_resource 1 epoch, reduction factor 2, as ``fusionlab tune``'s
       ASHA defaults). Optuna's SuccessiveHalvingPruner *is* asynchronous successive halving (ASHA, Li et al.
       2020): the same algorithm family as Ray Tune's ``ASHAScheduler`` that ``fusionlab tune`` uses; here it runs
       in-process with ``trial.report(val_miou, epoch)`` / ``trial.should_prune()`` after every epoch but the
       last. Every epoch a trial trains, pruned or not, costs one trial-epoch. Only a trial that trains all
       ``--epochs`` epochs can "reach" the target (a pruned trial's intermediate mIoU does not count), and
       it reaches it when its score >= grid best - ``--tolerance``. The search stops there or at ``--cap``
       trial-epochs (default: the grid's), and is repeated for ``--seeds`` sampler seeds (median/min/max).

Fairness: the same data, the same epochs per trial, the same optimiser and the same ``train.seed`` (identical
initial weights and batch order) for every grid cell and every Optuna trial; only λ, θ and portion differ.
Trials run in this process through ``fusionlab.train.loop.train_loop`` with a ``LocalContext`` subclass that
stops a pruned trial after its report. The subclass reports as a non-zero rank, so the loop neither tracks to
MLflow nor writes checkpoints: neither affects what is trained, and both would only add wall time.

Read the numbers with care: on small synthetic runs the cells' mIoUs can be close together and noisy (λ and θ act
through BN scaling factors that move slowly in a few epochs), so the grid's spread (best/median/worst), the number
of cells already within tolerance of the best, the expected cost of trying cells in random order, and the
seed-to-seed spread of the best cell (``--noise-seeds``) are printed next to the result.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import os
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fusionlab.config import Config, set_dotted
from fusionlab.data.synthetic import write_synthetic
from fusionlab.train.context import LocalContext
from fusionlab.train.loop import train_loop
from fusionlab.train.prepare import parse_config

console = Console(width=None if os.isatty(1) else 150)
PARAMS = ("model.params.lambda", "model.params.threshold", "model.params.portion")
SHORT = {"model.params.lambda": "λ", "model.params.threshold": "θ", "model.params.portion": "portion"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--train", type=int, default=64, help="training samples")
    data.add_argument("--val", type=int, default=32, help="validation samples")
    data.add_argument("--size", default="48x64", help="HxW of the synthetic images (and the training crop)")
    data.add_argument("--data-seed", type=int, default=0)
    train = parser.add_argument_group("training (identical for every trial)")
    train.add_argument("--epochs", type=int, default=6, help="epochs per trial (grid cell or Optuna trial)")
    train.add_argument("--batch", type=int, default=4)
    train.add_argument("--lr", type=float, default=3e-3,
                       help="Adam learning rate, encoder and decoder (3e-3: at 1e-3 the BN scaling factors that λ "
                            "penalises barely move in a few epochs; 1e-2 collapses to one class)")
    train.add_argument("--backbone", default="resnet_mini")
    train.add_argument("--model-seed", type=int, default=0, help="train.seed: initial weights and batch order")
    train.add_argument("--score", choices=["final", "best"], default="final",
                       help="a finished trial's score: val/miou after the last epoch, or its best epoch")
    space = parser.add_argument_group("search space (grid and Optuna share the ranges)")
    space.add_argument("--lambda-range", type=float, nargs=2, default=[1e-4, 1e-1], metavar=("LOW", "HIGH"))
    space.add_argument("--theta-range", type=float, nargs=2, default=[5e-3, 5e-2], metavar=("LOW", "HIGH"))
    space.add_argument("--portion-range", type=float, nargs=2, default=[0.1, 0.5], metavar=("LOW", "HIGH"))
    space.add_argument("--grid", type=int, nargs=3, default=[3, 3, 2], metavar=("NL", "NT", "NP"),
                       help="grid points for λ (log), θ (log), portion (linear)")
    search = parser.add_argument_group("Optuna")
    search.add_argument("--seeds", type=int, default=3, help="Optuna runs, TPE sampler seeds 0..N-1")
    search.add_argument("--tolerance", type=float, default=0.01, help="reach = score >= grid best - tolerance")
    search.add_argument("--cap", type=int, default=None, help="trial-epochs per Optuna run (default: the grid's)")
    search.add_argument("--reduction-factor", type=int, default=2)
    search.add_argument("--min-resource", type=int, default=1, help="epochs before a trial can be pruned")
    search.add_argument("--run-to-cap", action="store_true",
                        help="keep searching after reaching the target, up to the cap (for 'best mIoU found')")
    search.add_argument("--startup-trials", type=int, default=10, help="TPE's random start-up trials")
    out = parser.add_argument_group("output")
    out.add_argument("--noise-seeds", type=int, default=2,
                     help="re-train the grid's best cell with this many other train.seed values (noise floor)")
    out.add_argument("--plot", default="search_efficiency.png", help="PNG: best-so-far mIoU vs trial-epochs")
    out.add_argument("--threads", type=int, default=1,
                     help="torch intra-op threads (0: torch's default). 1 is as fast for these tiny models and "
                          "does not collapse when another process shares the cores")
    out.add_argument("--workdir", default=None, help="keep the data here (default: a temporary directory)")
    out.add_argument("--quiet", action="store_true", help="no line per trial")
    return parser.parse_args()


def quiet_libraries() -> None:
    """Before anything imports MLflow, Ray or Optuna (the fusionlab modules imported above do not)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "ray", "optuna", "alembic", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


class Pruned(Exception):
    """Raised from ``report`` to stop a trial the pruner rejected."""


class OutOfBudget(Exception):
    """Raised from ``report`` when the search has spent its trial-epochs cap."""


class BenchContext(LocalContext):
    """``LocalContext`` that counts trial-epochs and can stop a trial after an epoch's report.

    A non-zero rank: the loop skips MLflow tracking and checkpoints (see the module docstring)."""

    rank = 1

    def __init__(self, config: Config, checkpoint_root: Path, on_epoch):
        super().__init__(config, checkpoint_root)
        self.on_epoch = on_epoch

    def restore(self) -> dict[str, Any] | None:
        return None  # every trial starts from scratch

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        super().report(metrics, None)
        self.on_epoch(metrics)


@dataclass
class Trial:
    params: dict[str, float]
    epochs: int = 0  # trial-epochs it cost
    mious: list[float] = field(default_factory=list)
    exchanged: float = 0.0  # exchange/fraction after the last epoch trained
    state: str = "running"  # complete | pruned | cut (the cap ended it)
    seconds: float = 0.0

    def score(self, how: str) -> float:
        return self.mious[-1] if how == "final" else max(self.mious)


@dataclass
class Search:
    name: str
    trials: list[Trial] = field(default_factory=list)
    reached_at: int | None = None  # trial-epochs spent when a trial first reached the target
    spent: int = 0
    # (trial-epochs, best-so-far score) after every finished trial
    curve: list[tuple[int, float]] = field(default_factory=list)

    def best(self, how: str) -> float:
        done = [t.score(how) for t in self.trials if t.state == "complete"]
        return max(done) if done else float("nan")


class Bench:
    def __init__(self, args: argparse.Namespace, data_path: Path, workdir: Path):
        self.args = args
        height, width = (int(v) for v in args.size.lower().split("x"))
        self.base = {
            "data": {"path": str(data_path), "modalities": ["rgb", "depth"], "crop": [height, width],
                     "scale_range": [0.9, 1.1]},
            "model": {"name": "cen", "backbone": args.backbone},
            "train": {"epochs": args.epochs, "batch_size": args.batch, "optimizer": "adam",
                      "lr_encoder": args.lr, "lr_decoder": args.lr, "seed": args.model_seed},
            "resources": {"num_workers": 1, "use_gpu": False},
            "tracking": {"experiment": "search-efficiency"},
        }
        self.workdir = workdir
        self.uri = f"sqlite:///{workdir / 'mlflow.db'}"  # unused at rank != 0; valid should that change
        self.count = 0

    def train(self, params: dict[str, float], on_epoch, seed: int | None = None) -> Trial:
        """One trial; ``on_epoch(trial, metrics)`` may raise Pruned / OutOfBudget to stop it after that epoch."""
        self.count += 1
        tree = self.base
        for key, value in params.items():
            tree = set_dotted(tree, key, float(value))
        tree = set_dotted(tree, "tracking.run_name", f"trial-{self.count:04d}")
        if seed is not None:
            tree = set_dotted(tree, "train.seed", seed)
        config = parse_config(tree, origin=f"trial {self.count}")
        trial = Trial(dict(params))

        def hook(metrics: dict[str, Any]) -> None:
            trial.epochs += 1
            trial.mious.append(float(metrics["val/miou"]))
            trial.exchanged = float(metrics.get("exchange/fraction", 0.0))
            on_epoch(trial, metrics)

        context = BenchContext(config, self.workdir / "checkpoints" / config.run_name(), hook)
        payload = {"config": config.model_dump(mode="json", by_alias=True), "workdir": str(self.workdir),
                   "tracking_uri": self.uri, "parent_run_id": None}
        start = time.perf_counter()
        try:
            train_loop(payload, context)
            trial.state = "complete"
        except Pruned:
            trial.state = "pruned"
        except OutOfBudget:
            trial.state = "cut"
        trial.seconds = time.perf_counter() - start
        return trial

    def log(self, tag: str, trial: Trial, spent: int, best: float) -> None:
        if self.args.quiet:
            return
        params = " ".join(f"{SHORT[k]}={v:.3g}" for k, v in trial.params.items())
        score = f"{trial.score(self.args.score):.4f}" if trial.mious else "-"
        console.print(f"  {tag:<10} {params:<40} {trial.state:<8} epochs={trial.epochs} mIoU={score} "
                      f"spent={spent} best={best:.4f} ({trial.seconds:.1f}s)", highlight=False)


def grid_points(args: argparse.Namespace) -> list[dict[str, float]]:
    nl, nt, npor = args.grid
    lambdas = np.geomspace(*args.lambda_range, nl) if nl > 1 else [math.sqrt(math.prod(args.lambda_range))]
    thetas = np.geomspace(*args.theta_range, nt) if nt > 1 else [math.sqrt(math.prod(args.theta_range))]
    portions = np.linspace(*args.portion_range, npor) if npor > 1 else [sum(args.portion_range) / 2]
    return [dict(zip(PARAMS, (float(a), float(b), float(c)), strict=True))
            for a, b, c in itertools.product(lambdas, thetas, portions)]


def run_grid(bench: Bench) -> Search:
    args = bench.args
    search = Search("grid")
    def on_epoch(trial: Trial, metrics: dict[str, Any]) -> None:
        search.spent += 1

    for index, params in enumerate(grid_points(args)):
        trial = bench.train(params, on_epoch)
        search.trials.append(trial)
        search.curve.append((search.spent, search.best(args.score)))
        bench.log(f"cell {index + 1:>2}", trial, search.spent, search.best(args.score))
    return search


def run_optuna(bench: Bench, seed: int, target: float, cap: int) -> Search:
    import optuna

    args = bench.args
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=args.startup_trials)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=args.min_resource,
                                                    reduction_factor=args.reduction_factor,
                                                    min_early_stopping_rate=0)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    search = Search(f"optuna seed {seed}")
    number = 0
    while (search.reached_at is None or args.run_to_cap) and search.spent < cap:
        number += 1
        handle = study.ask()
        params = {
            "model.params.lambda": handle.suggest_float("lambda", *args.lambda_range, log=True),
            "model.params.threshold": handle.suggest_float("threshold", *args.theta_range, log=True),
            "model.params.portion": handle.suggest_float("portion", *args.portion_range),
        }

        def on_epoch(trial: Trial, metrics: dict[str, Any], handle: optuna.Trial = handle) -> None:
            search.spent += 1
            epoch = trial.epochs  # epochs trained so far = ASHA's resource
            handle.report(trial.mious[-1], epoch)
            if epoch < args.epochs and handle.should_prune():  # a trial at its last epoch simply finishes
                raise Pruned
            if epoch < args.epochs and search.spent >= cap:
                raise OutOfBudget

        trial = bench.train(params, on_epoch)
        search.trials.append(trial)
        if trial.state == "complete":
            study.tell(handle, trial.score(args.score))
            if search.reached_at is None and trial.score(args.score) >= target:
                search.reached_at = search.spent
        elif trial.state == "pruned":
            study.tell(handle, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(handle, state=optuna.trial.TrialState.FAIL)
        search.curve.append((search.spent, search.best(args.score)))
        bench.log(f"trial {number:>2}", trial, search.spent, search.best(args.score))
    return search


def expected_random_order(cells: int, good: int, epochs: int) -> float:
    """Expected trial-epochs until the first of ``good`` cells, trying the ``cells`` cells in random order."""
    return epochs * (cells + 1) / (good + 1)


def plot(path: Path, grid: Search, runs: list[Search], target: float, grid_best: float, tolerance: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    xs, ys = zip(*[(0, float("nan")), *grid.curve], strict=True)
    ax.step(xs, ys, where="post", color="black", linewidth=2, marker="o", markersize=3, label="grid (cell order)")
    for run in runs:
        if not run.curve:
            continue
        xs, ys = zip(*[(0, float("nan")), *run.curve], strict=True)
        label = run.name + (f" (reached at {run.reached_at})" if run.reached_at is not None else " (not reached)")
        ax.step(xs, ys, where="post", alpha=0.85, marker="o", markersize=5, label=label)  # marker: 1-trial runs
        if run.reached_at is not None:
            ax.axvline(run.reached_at, linestyle=":", alpha=0.4, color=ax.lines[-1].get_color())
    ax.axhline(grid_best, color="grey", linestyle="--", linewidth=1, label=f"grid best {grid_best:.4f}")
    ax.axhline(target, color="tab:red", linestyle="--", linewidth=1,
               label=f"target: grid best - {tolerance:g}")
    ax.set_xlabel("trial-epochs")
    ax.set_ylabel("best-so-far val mIoU (finished trials)")
    ax.set_title("CEN λ×θ×portion: grid vs Optuna TPE + successive halving (ASHA)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.lower().split("x"))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="search-efficiency-") as tmp:
        workdir = Path(args.workdir).resolve() if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        data_path = workdir / "synthetic"
        if not (data_path / "manifest.json").exists():
            write_synthetic(data_path, train=args.train, val=args.val, test=1, size=(height, width),
                            seed=args.data_seed)
        bench = Bench(args, data_path, workdir)
        console.print(f"[bold]data[/] synthetic-rgbd {args.train} train / {args.val} val at {height}x{width}; "
                      f"[bold]trial[/] {args.epochs} epochs, {args.backbone}, Adam lr {args.lr:g}, batch "
                      f"{args.batch}, train.seed {args.model_seed}; torch threads {torch.get_num_threads()}",
                      highlight=False)

        console.print(f"[bold]grid[/] {'×'.join(map(str, args.grid))} = {math.prod(args.grid)} cells")
        grid = run_grid(bench)
        scores = [t.score(args.score) for t in grid.trials]
        grid_best = max(scores)
        target = grid_best - args.tolerance
        best_cell = grid.trials[scores.index(grid_best)]
        good = sum(s >= target for s in scores)
        grid_cost = grid.spent
        grid_first = next(e for e, b in grid.curve if b >= target)
        cap = args.cap or grid_cost

        noise = []
        if args.noise_seeds:
            console.print(f"[bold]noise[/] best cell with train.seed {args.model_seed + 1}.."
                          f"{args.model_seed + args.noise_seeds}")
            for offset in range(1, args.noise_seeds + 1):
                trial = bench.train(best_cell.params, lambda trial, metrics: None, seed=args.model_seed + offset)
                noise.append(trial.score(args.score))
                bench.log(f"seed {args.model_seed + offset}", trial, 0, float("nan"))

        runs = []
        for seed in range(args.seeds):
            console.print(f"[bold]optuna[/] TPE seed {seed} + SuccessiveHalvingPruner (ASHA; min_resource "
                          f"{args.min_resource}, reduction factor {args.reduction_factor}), cap {cap} trial-epochs")
            runs.append(run_optuna(bench, seed, target, cap))
    elapsed = time.perf_counter() - start

    plot_path = Path(args.plot).resolve()
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    plot(plot_path, grid, runs, target, grid_best, args.tolerance)

    # ---- report ----
    params = ", ".join(f"{SHORT[k]}={v:.3g}" for k, v in best_cell.params.items())
    console.print()
    console.print(f"grid spread ({args.score} val mIoU over {len(scores)} cells): best {grid_best:.4f} "
                  f"[{params}], median {statistics.median(scores):.4f}, worst {min(scores):.4f}; "
                  f"{good}/{len(scores)} cells within {args.tolerance:g} of the best (target {target:.4f})",
                  highlight=False)
    exchanged = [t.exchanged for t in grid.trials]
    console.print(f"exchanged channel fraction after training (|γ| < θ): {min(exchanged):.3f}..{max(exchanged):.3f} "
                  f"over the grid" + ("; θ only matters once some γ fall below it, so here θ is inert"
                                      if max(exchanged) == 0 else ""), highlight=False)
    if noise:
        all_seeds = [best_cell.score(args.score), *noise]
        console.print(f"seed noise: the best cell with train.seed {args.model_seed}..{args.model_seed + len(noise)} "
                      f"scores {', '.join(f'{v:.4f}' for v in all_seeds)} (range "
                      f"{max(all_seeds) - min(all_seeds):.4f}); differences below this are not meaningful",
                      highlight=False)

    table = Table(title=f"Trial-epochs to come within {args.tolerance * 100:g} mIoU of the grid's best "
                        f"({grid_best:.4f}); {args.epochs} epochs per trial")
    table.add_column("method")
    table.add_column("trial-epochs to reach", justify="right")
    table.add_column("trials (pruned)", justify="right")
    table.add_column("best mIoU found", justify="right")
    table.add_column("grid / method", justify="right")
    table.add_row(f"grid {'×'.join(map(str, args.grid))} (all cells)", str(grid_cost), f"{len(grid.trials)} (0)",
                  f"{grid_best:.4f}", "1.00")
    table.add_row("  grid, cell order (hindsight)", str(grid_first), "-", "-", f"{grid_cost / grid_first:.2f}")
    expected = expected_random_order(len(scores), good, args.epochs)
    table.add_row("  grid, random order (expected, hindsight)", f"{expected:.1f}", "-", "-",
                  f"{grid_cost / expected:.2f}")
    for run in runs:
        pruned = sum(t.state == "pruned" for t in run.trials)
        reached = str(run.reached_at) if run.reached_at is not None else f"not reached (cap {cap})"
        ratio = f"{grid_cost / run.reached_at:.2f}" if run.reached_at is not None else "-"
        table.add_row(f"Optuna TPE + ASHA, seed {run.name.split()[-1]}", reached,
                      f"{len(run.trials)} ({pruned})", f"{run.best(args.score):.4f}", ratio)
    reached = [r.reached_at for r in runs if r.reached_at is not None]
    if runs:
        # an unreached run costs more than the cap: infinity for order statistics
        costs = sorted(r.reached_at if r.reached_at is not None else math.inf for r in runs)
        med = statistics.median(costs)

        def shown(value: float) -> str:
            return f"{value:g}" if math.isfinite(value) else f"not reached (cap {cap})"

        def ratio_of(value: float) -> str:
            return f"{grid_cost / value:.2f}" if math.isfinite(value) else f"< {grid_cost / cap:.2f}"

        summary = f"{shown(med)} [{shown(costs[0])}, {shown(costs[-1])}]"
        ratio = f"{ratio_of(med)} [{ratio_of(costs[-1])}, {ratio_of(costs[0])}]"
        best_found = [r.best(args.score) for r in runs]
        table.add_row(escape(f"Optuna TPE + ASHA, median [min, max] of {len(runs)}"), escape(summary),
                      f"{len(reached)}/{len(runs)} reached", f"{statistics.median(best_found):.4f}", escape(ratio),
                      style="bold")
    console.print(table)
    console.print("ASHA here is optuna.pruners.SuccessiveHalvingPruner (asynchronous successive halving, the "
                  "algorithm of Ray Tune's ASHAScheduler used by `fusionlab tune`), run in-process without Ray. "
                  "'hindsight' rows need the grid's best to be known, so they are not achievable costs.",
                  highlight=False)
    console.print(f"plot: {plot_path}   wall time: {elapsed:.0f} s", highlight=False)


if __name__ == "__main__":
    main()
