"""Which month a run scores: the DAG's timetable and the month rule together (README, docs/contracts.md)."""

import datetime as dt
import importlib.util
from pathlib import Path

import pytest
from airflow.timetables.base import DataInterval, TimeRestriction
from airflow.timetables.interval import CronDataIntervalTimetable

from batch_scoring.month import resolve_month

UTC = dt.timezone.utc
DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "monthly_batch_scoring.py"


@pytest.fixture(scope="module")
def dag():
    spec = importlib.util.spec_from_file_location("monthly_batch_scoring_dag_file", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.monthly_batch_scoring_dag


@pytest.fixture(scope="module")
def timetable(dag):
    return dag.timetable  # a core timetable, as the scheduler rebuilds it from the serialized DAG


def test_the_schedule_is_a_monthly_interval_not_a_zero_width_cron(dag):
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.serialize()["expression"] == "0 0 1 * *"


def test_scheduled_and_backfill_run_ids_name_the_month_and_manual_ones_do_not_guess(timetable):
    from airflow.utils.types import DagRunType

    october = DataInterval(dt.datetime(2026, 10, 1, tzinfo=UTC), dt.datetime(2026, 11, 1, tzinfo=UTC))
    due = dt.datetime(2026, 11, 1, tzinfo=UTC)
    assert timetable.generate_run_id(run_type=DagRunType.SCHEDULED, run_after=due, data_interval=october) \
        == "scheduled__202610__2026-11-01T00:00:00+00:00"
    assert timetable.generate_run_id(run_type=DagRunType.BACKFILL_JOB, run_after=due, data_interval=october) \
        == "backfill__202610__2026-11-01T00:00:00+00:00"
    # A manual run's month may come from the form, which the timetable never sees: no month in its id.
    assert timetable.generate_run_id(run_type=DagRunType.MANUAL, run_after=due, data_interval=october) \
        == "manual__2026-11-01T00:00:00+00:00"


@pytest.mark.parametrize(
    "previous_start, expected_month, runs_after",
    [
        (dt.datetime(2026, 9, 1, tzinfo=UTC), "202610", dt.datetime(2026, 11, 1, tzinfo=UTC)),
        (dt.datetime(2026, 11, 1, tzinfo=UTC), "202612", dt.datetime(2027, 1, 1, tzinfo=UTC)),
        (dt.datetime(2027, 1, 1, tzinfo=UTC), "202702", dt.datetime(2027, 3, 1, tzinfo=UTC)),
    ],
)
def test_a_scheduled_run_scores_the_month_that_just_ended(timetable, dag, previous_start, expected_month, runs_after):
    previous_end = (previous_start + dt.timedelta(days=32)).replace(day=1)
    info = timetable.next_dagrun_info(
        last_automated_data_interval=DataInterval(previous_start, previous_end),
        restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=True),
    )
    assert info.run_after == runs_after
    assert resolve_month(None, info.data_interval.start) == expected_month


@pytest.mark.parametrize(
    "run_after, expected",
    [
        (dt.datetime(2026, 11, 26, 9, 30, tzinfo=UTC), "202610"),
        (dt.datetime(2026, 11, 1, 0, 0, tzinfo=UTC), "202610"),
        (dt.datetime(2026, 11, 1, 0, 0, 1, tzinfo=UTC), "202610"),
        (dt.datetime(2027, 1, 15, tzinfo=UTC), "202612"),
        (dt.datetime(2026, 12, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))), "202610"),  # 22:30 UTC, 30 Nov
    ],
)
def test_a_manual_run_without_a_month_scores_what_the_timetable_infers(timetable, run_after, expected):
    # Airflow 3 gives a manual run no data interval: the month comes from when it was triggered,
    # and must be the month the timetable itself would infer for that moment.
    inferred = timetable.infer_manual_data_interval(run_after=run_after)
    assert resolve_month(None, inferred.start) == expected
    assert resolve_month(None, None, run_after) == expected


def test_the_trigger_form_month_wins(timetable):
    interval = timetable.infer_manual_data_interval(run_after=dt.datetime(2026, 11, 26, tzinfo=UTC))
    assert resolve_month("202503", interval.start) == "202503"


def test_the_form_month_field_bounds_length_only_and_the_plan_refuses_a_bad_month_in_one_line(dag):
    """A pattern in the Param would answer the form with "400 Bad Request", the regular expression and a schema
    dump; the form takes any short text and the plan task refuses a bad month by the month rule, in one line."""
    from airflow.sdk.definitions.param import ParamsDict

    params = ParamsDict(dag.params)
    for accepted in ("202610", None, "2026-13"):
        params["month"] = accepted
        params.validate()
    with pytest.raises(Exception, match="month"):
        params["month"] = "2" * 5000
        params.validate()