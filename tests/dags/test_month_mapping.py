"""Which month a run scores: the DAG's timetable and the month rule together (README, docs/contracts.md)."""

import datetime as dt
import importlib.util
from pathlib import Path

import pytest
from airflow.timetables.base import TimeRestriction

from batch_scoring.month import InvalidMonth, resolve_month

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
    """The core timetable, as the scheduler rebuilds it from the serialized DAG."""
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable

    return decode_timetable(encode_timetable(dag.timetable))


def test_the_schedule_is_airflows_partitioned_monthly_cron(timetable):
    from airflow.timetables.trigger import CronPartitionTimetable

    assert isinstance(timetable, CronPartitionTimetable) and timetable.partitioned
    assert timetable.serialize()["expression"] == "0 0 1 * *"


@pytest.mark.parametrize(
    "previous_run, runs_after, expected_month",
    [
        (dt.datetime(2026, 10, 1, tzinfo=UTC), dt.datetime(2026, 11, 1, tzinfo=UTC), "202610"),
        (dt.datetime(2026, 12, 1, tzinfo=UTC), dt.datetime(2027, 1, 1, tzinfo=UTC), "202612"),
        (dt.datetime(2027, 2, 1, tzinfo=UTC), dt.datetime(2027, 3, 1, tzinfo=UTC), "202702"),
    ],
)
def test_a_scheduled_run_is_the_partition_of_the_month_that_just_ended(timetable, dag, previous_run, runs_after,
                                                                       expected_month):
    from airflow.timetables.base import DagRunInfo
    from airflow.utils.types import DagRunType

    info = timetable.next_dagrun_info_v2(
        last_dagrun_info=DagRunInfo(run_after=previous_run, data_interval=None),
        restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=True),
    )
    assert (info.run_after, info.partition_key) == (runs_after, expected_month)
    assert resolve_month(None, info.partition_key, info.run_after) == expected_month
    run_id = timetable.generate_run_id(run_type=DagRunType.SCHEDULED, run_after=info.run_after,
                                       data_interval=None, partition_key=info.partition_key)
    assert run_id.startswith(f"scheduled__{runs_after.isoformat()}__{expected_month}__"), run_id


def test_switched_on_it_schedules_the_last_complete_month_at_once(timetable, monkeypatch):
    import airflow.timetables.trigger as trigger_timetables

    monkeypatch.setattr(trigger_timetables, "utcnow", lambda: dt.datetime(2026, 11, 26, 9, tzinfo=UTC))
    info = timetable.next_dagrun_info_v2(
        last_dagrun_info=None, restriction=TimeRestriction(earliest=None, latest=None, catchup=False))
    assert (info.run_after, info.partition_key) == (dt.datetime(2026, 11, 1, tzinfo=UTC), "202610")


def test_a_backfill_from_the_first_of_m1_to_the_first_of_m2_scores_m1_to_m2(timetable):
    infos = timetable.iter_partition_dagrun_infos(earliest=dt.datetime(2026, 1, 1, tzinfo=UTC),
                                                  latest=dt.datetime(2026, 3, 1, tzinfo=UTC))
    assert [info.partition_key for info in infos] == ["202601", "202602", "202603"]


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
def test_a_manual_run_without_a_month_scores_the_last_complete_month(run_after, expected):
    assert resolve_month(None, None, run_after) == expected


def test_the_trigger_form_month_or_partition_key_and_a_clash_refused_in_one_line():
    assert resolve_month("202503", None, dt.datetime(2026, 11, 26, tzinfo=UTC)) == "202503"
    assert resolve_month(None, "202503", dt.datetime(2026, 11, 26, tzinfo=UTC)) == "202503"
    assert resolve_month("202503", "202503") == "202503"
    with pytest.raises(InvalidMonth, match=r"^the run is partition 202601 but its configuration asks for month "
                                           r"202503; leave 'month' empty"):
        resolve_month("202503", "202601")
    with pytest.raises(InvalidMonth, match=r"^partition key: invalid month '2026-01'"):
        resolve_month(None, "2026-01")


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

def test_a_run_given_a_logical_date_scores_the_month_before_it_not_the_month_it_was_triggered_in():
    from types import SimpleNamespace

    from batch_scoring.month import run_date

    triggered = dt.datetime(2026, 12, 3, 11, tzinfo=UTC)
    given = SimpleNamespace(logical_date=dt.datetime(2026, 11, 1, tzinfo=UTC), run_after=triggered)
    assert resolve_month(None, None, run_date(given)) == "202610"  # `airflow dags test … 2026-11-01`
    assert resolve_month(None, None, run_date(SimpleNamespace(logical_date=None, run_after=triggered))) == "202611"
