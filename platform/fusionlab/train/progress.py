"""Live progress on the driver's console: one line per epoch (from rank 0's reports under Ray, or in-process)."""

from __future__ import annotations

from typing import Any


def format_progress(metrics: dict[str, Any], epochs: int, run: str | None = None) -> str:
    """``run`` names the run at the end of the line, where several train at once (a grid on Ray)."""
    parts = [f"epoch {int(metrics['epoch']) + 1}/{epochs}", f"train/loss {metrics['train/loss']:.4f}"]
    for split in ("val", "test"):  # test: the per-epoch evaluation under train.selection best_test
        if f"{split}/miou" in metrics:
            parts.append(f"{split}/miou {metrics[f'{split}/miou']:.4f}")
        for key in (f"{split}/l1", f"{split}/fid", f"{split}/kid"):  # translation
            if key in metrics:
                parts.append(f"{key} {metrics[key]:.4g}")
    if "exchange/fraction" in metrics:
        parts.append(f"exchanged {metrics['exchange/fraction']:.1%}")
    if run:
        parts.append(f"({run})")
    return "[fusionlab] " + "  ".join(parts)


def progress_callback(epochs: int, run: str | None = None):
    """A Ray Train callback that prints ``format_progress`` for every report (imports Ray only when called)."""
    from ray.train import UserCallback

    class ProgressCallback(UserCallback):
        def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
            print(format_progress(metrics[0], epochs, run), flush=True)

    return ProgressCallback()
