"""Paired differences between two rows of a report over the seeds both ran: what tells an effect from seed noise.

The rows' runs are matched by ``train.seed``; with ``d_i = a_i - b_i`` on the ranking metric as shown (segmentation:
points), the difference is ``mean(d)`` with the two-sided Student-t interval ``mean ± t(1 - (1 - c) / 2, n - 1) *
sd(d) / sqrt(n)`` (c = 0.95), which needs two shared seeds or more. Pairing removes what a seed does to both rows
(the data order, the initialisation), so it is tighter than comparing the two rows' mean ± std.

Which rows: those the user names (``fusionlab report --pair A B``), else every exchanging CEN row against the row of
CEN without exchange on the same modalities and backbone (CEN's own ablation: does exchanging help?).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import t as student_t

from .report_scores import Row

EXCHANGING_MODELS = ("cen", "cen_penalised_exchange", "cen_random_exchange")
WITHOUT_EXCHANGE = "cen_no_exchange"
CONFIDENCE = 0.95
SEED_PARAM = "train.seed"


@dataclass(frozen=True)
class PairedDifference:
    first: str  # row labels
    second: str
    metric: str
    seeds: tuple[str, ...]  # the seeds both rows ran, in order
    mean: float  # first - second, as shown
    low: float
    high: float
    confidence: float = CONFIDENCE

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def row_seeds(row: Row) -> dict[str, float]:
    """Seed -> the row's ranking score as shown (the first run of a seed, should a row have two)."""
    scores: dict[str, float] = {}
    for run in row.runs:
        seed = run.params.get(SEED_PARAM)
        if seed is not None and row.task.rank in run.scores:
            scores.setdefault(seed, row.task.scale * run.scores[row.task.rank])
    return scores


def paired_difference(first: Row, second: Row, confidence: float = CONFIDENCE) -> PairedDifference | None:
    """``first - second`` on the ranking metric over their shared seeds; None with fewer than two."""
    a, b = row_seeds(first), row_seeds(second)
    seeds = tuple(sorted(set(a) & set(b), key=lambda s: (len(s), s)))
    if len(seeds) < 2:
        return None
    differences = [a[seed] - b[seed] for seed in seeds]
    mean = statistics.fmean(differences)
    half = student_t.ppf(1 - (1 - confidence) / 2, len(seeds) - 1) * statistics.stdev(differences) / math.sqrt(
        len(seeds))
    return PairedDifference(first.label, second.label, first.task.rank, seeds, mean, mean - half, mean + half,
                            confidence)


def default_pairs(rows: Sequence[Row]) -> list[tuple[Row, Row]]:
    """Every exchanging CEN row with the CEN-without-exchange row of the same modalities and backbone."""
    without = [row for row in rows if row.runs[0].model == WITHOUT_EXCHANGE]
    pairs = []
    for row in rows:
        if row.runs[0].model in EXCHANGING_MODELS:
            pairs += [(row, other) for other in without
                      if (other.modalities, other.backbone) == (row.modalities, row.backbone)]
    return pairs


def named_pairs(rows: Sequence[Row], labels: Sequence[tuple[str, str]]) -> list[tuple[Row, Row]]:
    """The rows of each ``(first, second)`` label pair; a label no row has raises ``ValueError`` naming the rows."""
    by_label = {row.label: row for row in rows}
    unknown = [label for pair in labels for label in pair if label not in by_label]
    if unknown:
        raise ValueError(f"--pair: no row labelled {unknown}; the rows are {sorted(by_label)}")
    return [(by_label[first], by_label[second]) for first, second in labels]


def paired_differences(rows: Sequence[Row], labels: Sequence[tuple[str, str]] | None = None
                       ) -> tuple[PairedDifference, ...]:
    """The named pairs' differences (``labels``: each needs two shared seeds, else ``ValueError``), else the
    default pairs' (those with fewer left out)."""
    differences = []
    for first, second in named_pairs(rows, labels) if labels else default_pairs(rows):
        difference = paired_difference(first, second)
        if difference is None and labels:
            raise ValueError(f"--pair {first.label!r} {second.label!r}: they share the seeds "
                             f"{sorted(set(row_seeds(first)) & set(row_seeds(second)))}; a paired difference "
                             f"needs two or more")
        if difference is not None:
            differences.append(difference)
    return tuple(differences)
