"""Seconds per named step of a start-up, each counted from the end of the step before: start-up as data."""

from __future__ import annotations

import time


class StepTimes(dict):
    """{step name: seconds}, in the order the steps ran. `started`: a `time.perf_counter()` reading taken
    earlier (default: now), from which the first step counts."""

    def __init__(self, started: float | None = None):
        super().__init__()
        self._mark = time.perf_counter() if started is None else started

    def step(self, name: str) -> None:
        now = time.perf_counter()
        self[name] = round(now - self._mark, 3)
        self._mark = now

    def describe(self) -> str:
        """`1.2s (capabilities 0.40s, model 0.80s)`: the total, then each step."""
        steps = ", ".join(f"{name.replace('_', ' ')} {seconds:.2f}s" for name, seconds in self.items())
        return f"{sum(self.values()):.1f}s ({steps})"
