"""One decoded sample: its modalities' arrays and (for segmentation) its label map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Sample:
    sample_id: str
    split: str
    modalities: dict[str, np.ndarray]  # name -> [H, W] or [H, W, C]
    label: np.ndarray | None = None  # [H, W] class ids, ignore_index where unlabelled
