"""The month a run scores: `YYYYMM`, validated before any I/O, derived from the run's data interval.

Mapping (README "Which month a run scores"): a run covers the data interval
[first day of month M, first day of month M+1) and scores month M. The monthly
run that starts on 1 November scores October; a manual run without a month
scores the last complete month before it was triggered; a `month` given in the
trigger form wins over both.
"""

from __future__ import annotations

import datetime as dt
import re

MONTH_PATTERN = r"^\d{4}(0[1-9]|1[0-2])$"
_MONTH = re.compile(MONTH_PATTERN)


class InvalidMonth(ValueError):
    pass


def validate_month(value: object) -> str:
    if not isinstance(value, str) or not _MONTH.match(value):
        raise InvalidMonth(f"invalid month {value!r}: expected YYYYMM, e.g. 202610")
    return value


def month_of(moment: dt.datetime) -> str:
    """The month a data interval starting at `moment` covers (UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return f"{moment.year:04d}{moment.month:02d}"


def resolve_month(requested: str | None, data_interval_start: dt.datetime | None) -> str:
    """The trigger form's month if given, else the data interval's month."""
    if requested not in (None, ""):
        return validate_month(requested)
    if data_interval_start is None:
        raise InvalidMonth("no month given and the run has no data interval: trigger it with a month (YYYYMM)")
    return validate_month(month_of(data_interval_start))
