"""What a month is: six ASCII digits, year then month (`202610`); the one definition both sides share.

The job writes the month into every row and the DAG keys every write on it, so
anything else is refused before any I/O, in one line naming the value:
`2026-13`, `../x`, Unicode digits (`２０２６１０`), `202610` followed by a newline,
5,000 digits. The trigger form's field only bounds its length (`MONTH_SCHEMA`): a
pattern there would be refused by Airflow as "400 Bad Request" with the regular
expression and a JSON-schema dump; the plan task refuses a bad month in this one
line instead, before any I/O, and the run's note says so.
"""

from __future__ import annotations

import re

# JSON schema keywords for the trigger form's month field: a length bound only, the rule is `validate_month`'s.
MONTH_SCHEMA = {"maxLength": 32}
_MONTH = re.compile(r"[0-9]{4}(0[1-9]|1[0-2])", re.ASCII)


class InvalidMonth(ValueError):
    pass


def is_month(value: object) -> bool:
    return isinstance(value, str) and _MONTH.fullmatch(value) is not None


def validate_month(value: object) -> str:
    if not is_month(value):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise InvalidMonth(f"invalid month {shown}: expected YYYYMM, six digits, e.g. 202610 for October 2026")
    return value
