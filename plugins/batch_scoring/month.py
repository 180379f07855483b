"""The month a run scores: `YYYYMM`, validated before any I/O; the run's partition key when it has one.

Mapping (README "Which month a run scores"): the monthly schedule is Airflow's
partitioned cron (`monthly_schedule`): the run due on 1 November is partition
`202610` and scores October; a backfill's runs are the months of its range. A
manual run scores the month in its trigger form (the `month` field, or the
form's *Partition key*), else the last complete month before its logical date
(`run_date`), or before it was triggered.
A run that is a partition and also asks for another month is refused: one of the
two would be scored under the other's name.
"""

from __future__ import annotations

import datetime as dt

from scoring.month import MONTH_SCHEMA, InvalidMonth, validate_month  # noqa: F401 - re-exported

MONTHLY_DAG_ID = "monthly_batch_scoring"  # the DAG whose runs this rule maps to months (and are noted with them)
# A run on the 1st at 00:00 UTC covers the month before it (`run_offset=-1`), its key the month as `YYYYMM`.
SCHEDULE_CRON = "0 0 1 * *"
PARTITION_KEY_FORMAT = "%Y%m"


def monthly_schedule():
    """The DAG's timetable: Airflow's own partitioned cron, keyed by the month a run scores.

    `run_immediately`: switched on, the DAG schedules the last complete month at once, as a monthly interval
    schedule does; without it a new deployment would wait for the next 1st."""
    from airflow.sdk import CronPartitionTimetable

    return CronPartitionTimetable(SCHEDULE_CRON, timezone="UTC", run_offset=-1, key_format=PARTITION_KEY_FORMAT,
                                  run_immediately=True)


def month_of(moment: dt.datetime) -> str:
    """The month `moment` falls in (UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return f"{moment.year:04d}{moment.month:02d}"


def previous_month(moment: dt.datetime) -> str:
    """The last complete month before `moment` (UTC): what a run due at `moment` on the schedule covers."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return month_of(moment.replace(day=1) - dt.timedelta(days=1))


def run_date(dag_run) -> dt.datetime | None:
    """The moment a run without a partition is "due": its logical date if it was given one (`airflow dags test
    … 2026-11-01`, a REST trigger's `logical_date`), else when it was triggered."""
    return getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)


def resolve_month(requested: str | None, partition_key: str | None = None,
                  run_after: dt.datetime | None = None) -> str:
    """The run's partition key, else the trigger form's month, else the month before `run_after`.

    Raises InvalidMonth (one line) for a bad month or key, or a form month that is not the run's partition."""
    if partition_key not in (None, ""):
        try:
            key = validate_month(partition_key)
        except InvalidMonth as error:
            raise InvalidMonth(f"partition key: {error}") from None
        if requested not in (None, "") and validate_month(requested) != key:
            raise InvalidMonth(f"the run is partition {key} but its configuration asks for month {requested}; "
                               f"leave 'month' empty (a backfill scores each of its months) or trigger "
                               f"{requested} as a run of its own")
        return key
    if requested not in (None, ""):
        return validate_month(requested)
    if run_after is not None:
        return validate_month(previous_month(run_after))
    raise InvalidMonth("no month given and the run has no partition: trigger it with a month (YYYYMM)")


def month_before(month: str) -> str:
    """The month before a `YYYYMM` month: what a month's drift is measured against."""
    year, number = divmod(int(validate_month(month)) - 1, 100)
    return f"{year - 1:04d}12" if number == 0 else f"{year:04d}{number:02d}"
