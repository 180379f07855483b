"""The month a run scores: `YYYYMM`, validated before any I/O, derived from the run's data interval.

Mapping (README "Which month a run scores"): a run covers the data interval
[first day of month M, first day of month M+1) and scores month M. The monthly
run that starts on 1 November scores October; a manual run without a month
(Airflow 3 gives it no data interval) scores the last complete month before it
was triggered, as the timetable would infer; a `month` given in the trigger
form wins over both.
"""

from __future__ import annotations

import datetime as dt

from scoring.month import MONTH_SCHEMA, InvalidMonth, validate_month  # noqa: F401 - re-exported

MONTHLY_DAG_ID = "monthly_batch_scoring"  # the DAG whose runs this rule maps to months (and are noted with them)


def month_of(moment: dt.datetime) -> str:
    """The month a data interval starting at `moment` covers (UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return f"{moment.year:04d}{moment.month:02d}"


def previous_month(moment: dt.datetime) -> str:
    """The last complete month before `moment` (UTC): what the monthly timetable infers for a manual run."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return month_of(moment.replace(day=1) - dt.timedelta(days=1))


def resolve_month(requested: str | None, data_interval_start: dt.datetime | None,
                  run_after: dt.datetime | None = None) -> str:
    """The trigger form's month if given, else the data interval's month, else the month before `run_after`."""
    if requested not in (None, ""):
        return validate_month(requested)
    if data_interval_start is not None:
        return validate_month(month_of(data_interval_start))
    if run_after is not None:
        return validate_month(previous_month(run_after))
    raise InvalidMonth("no month given and the run has no data interval: trigger it with a month (YYYYMM)")


def month_before(month: str) -> str:
    """The month before a `YYYYMM` month: what a month's drift is measured against."""
    year, number = divmod(int(validate_month(month)) - 1, 100)
    return f"{year - 1:04d}12" if number == 0 else f"{year:04d}{number:02d}"
