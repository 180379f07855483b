"""Drift of a month's predictions against the previous published month.

Two measures, both over distributions a month's manifest already records:
- the label mix: each label's share of the scored images, and its change in
  percentage points;
- the population stability index (PSI) of the label mix and of the top-1 score
  histogram: sum over bins of (p - q) * ln(p / q). Rule of thumb: below 0.1 the
  population is stable, 0.1 to 0.25 it moved, above 0.25 it changed.

A run whose PSI (either one) exceeds the threshold is marked as a warning: in
the task log, in the report and in the manifest. Empty bins are floored at a
small share so that a label that appears or vanishes counts, finitely.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

DEFAULT_PSI_THRESHOLD = 0.2
_FLOOR = 1e-4  # share given to an empty bin: finite PSI, still large for a label that appears or vanishes


def shares(counts: Mapping[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {key: count / total for key, count in counts.items()} if total else {}


def psi(expected: Sequence[float] | Mapping[str, float], actual: Sequence[float] | Mapping[str, float]) -> float:
    """Population stability index of two distributions over the same bins (counts or shares)."""
    if isinstance(expected, Mapping) or isinstance(actual, Mapping):
        keys = sorted(set(expected) | set(actual))
        expected = [expected.get(key, 0.0) for key in keys]
        actual = [actual.get(key, 0.0) for key in keys]
    if len(expected) != len(actual):
        raise ValueError(f"PSI needs the same bins on both sides ({len(expected)} vs {len(actual)})")
    expected_total, actual_total = sum(expected), sum(actual)
    if not expected_total or not actual_total:
        return 0.0
    value = 0.0
    for before, after in zip(expected, actual):
        p = max(after / actual_total, _FLOOR)
        q = max(before / expected_total, _FLOOR)
        value += (p - q) * math.log(p / q)
    return value


@dataclasses.dataclass(frozen=True)
class LabelShift:
    label: str
    previous: float  # share of scored images, 0..1
    current: float

    @property
    def change_points(self) -> float:
        return 100 * (self.current - self.previous)


@dataclasses.dataclass(frozen=True)
class Drift:
    previous_month: str
    label_psi: float
    score_psi: float
    threshold: float
    labels: tuple[LabelShift, ...]

    @property
    def warning(self) -> bool:
        return max(self.label_psi, self.score_psi) > self.threshold

    def describe(self) -> str:
        """One line for the task log."""
        largest = max(self.labels, key=lambda shift: abs(shift.change_points), default=None)
        moved = f"; largest label change {largest.label} {largest.change_points:+.1f} pts" if largest else ""
        verdict = f"above the threshold {self.threshold:g}" if self.warning else f"within {self.threshold:g}"
        return (f"drift vs {self.previous_month}: label PSI {self.label_psi:.3f}, score PSI {self.score_psi:.3f} "
                f"({verdict}){moved}")

    def to_dict(self) -> dict:
        return {"previous_month": self.previous_month, "label_psi": round(self.label_psi, 6),
                "score_psi": round(self.score_psi, 6), "threshold": self.threshold, "warning": self.warning,
                "message": self.describe()}


def compare(previous: Mapping | None, current: Mapping, *, previous_month: str,
            threshold: float = DEFAULT_PSI_THRESHOLD) -> Drift | None:
    """Drift from `previous` to `current` (each a manifest's `summary`: `labels` counts, `score_bins` counts);
    None when there is no previous month to compare with."""
    if not previous or not previous.get("labels"):
        return None
    before, after = shares(previous["labels"]), shares(current["labels"])
    shifts = tuple(LabelShift(label, before.get(label, 0.0), after.get(label, 0.0))
                   for label in sorted(set(before) | set(after)))
    score_psi = (psi(previous["score_bins"], current["score_bins"])
                 if len(previous.get("score_bins") or ()) == len(current["score_bins"]) else 0.0)
    return Drift(previous_month=previous_month, label_psi=psi(previous["labels"], current["labels"]),
                 score_psi=score_psi, threshold=threshold, labels=shifts)
