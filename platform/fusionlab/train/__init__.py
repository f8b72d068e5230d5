"""Training: the per-worker loop, losses, metrics, checkpoints, and the Ray Train launcher."""
