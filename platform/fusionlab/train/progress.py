"""Live progress on the driver's console: one line per epoch from the reports of rank 0."""

from __future__ import annotations

from typing import Any

from ray.train import UserCallback


class ProgressCallback(UserCallback):
    def __init__(self, epochs: int):
        self.epochs = epochs

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        line = format_progress(metrics[0], self.epochs)
        print(line, flush=True)


def format_progress(metrics: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {int(metrics['epoch']) + 1}/{epochs}", f"train/loss {metrics['train/loss']:.4f}"]
    if "val/miou" in metrics:
        parts.append(f"val/miou {metrics['val/miou']:.4f}")
    if "exchange/fraction" in metrics:
        parts.append(f"exchanged {metrics['exchange/fraction']:.1%}")
    return "[fusionlab] " + "  ".join(parts)
