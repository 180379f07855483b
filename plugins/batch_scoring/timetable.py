"""The monthly DAG's timetable: monthly data intervals whose run ids name the month they score.

The same intervals as `CronDataIntervalTimetable("0 0 1 * *")`; only the run id
differs, so the runs list and the grid show the month without opening anything:
`scheduled__202610__2026-11-01T00:00:00+00:00` is the run due on 1 November that
scores October, `backfill__202609__2026-10-01T…` the backfilled September. A
manual run keeps Airflow's id (`manual__<time>`): its month may come from the
trigger form, which a timetable never sees; the form's `month` shows in the runs
list's Conf column, and the run's note names it (see `run_notes`).

A custom timetable must be registered by a plugin (the scheduler rebuilds it
from the serialized DAG): `batch_scoring_plugin` does.
"""

from __future__ import annotations

from airflow.timetables.interval import CronDataIntervalTimetable
from airflow.utils.types import DagRunType

from batch_scoring.month import month_of

_LABELLED_RUN_TYPES = (DagRunType.SCHEDULED, DagRunType.BACKFILL_JOB)


class MonthlyScoringTimetable(CronDataIntervalTimetable):
    def __init__(self, cron: str = "0 0 1 * *", timezone="UTC") -> None:
        super().__init__(cron, timezone)

    @property
    def summary(self) -> str:
        return f"{self._expression} (monthly; run ids name the month)"

    def generate_run_id(self, *, run_type, run_after, data_interval, **extra) -> str:
        if data_interval is not None and run_type in _LABELLED_RUN_TYPES:
            return run_type.generate_run_id(suffix=f"{month_of(data_interval.start)}__{run_after.isoformat()}")
        return super().generate_run_id(run_type=run_type, run_after=run_after, data_interval=data_interval, **extra)
