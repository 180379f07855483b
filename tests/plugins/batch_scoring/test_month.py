import datetime as dt

import pytest

from batch_scoring.month import InvalidMonth, month_of, resolve_month, validate_month


@pytest.mark.parametrize("good", ["202601", "202612", "199901"])
def test_accepts_yyyymm(good):
    assert validate_month(good) == good


@pytest.mark.parametrize("bad", ["2026-13", "../x", "202613", "202600", "20261", "2026011", " 202601", "", None, 202601])
def test_refuses_anything_else_in_one_line_naming_the_value(bad):
    with pytest.raises(InvalidMonth) as caught:
        validate_month(bad)
    message = str(caught.value)
    assert repr(bad) in message and "YYYYMM" in message and "\n" not in message


def test_bad_form_month_is_refused_even_with_a_moment_to_fall_back_on():
    with pytest.raises(InvalidMonth, match="'../x'"):
        resolve_month("../x", None, dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc))


def test_a_moment_month_is_read_in_utc():
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert month_of(dt.datetime(2026, 11, 1, 1, 0, tzinfo=plus_two)) == "202610"


def test_no_month_no_partition_and_no_moment_is_a_clear_error():
    with pytest.raises(InvalidMonth, match="trigger it with a month"):
        resolve_month(None, None, None)
