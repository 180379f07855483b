"""The plan task: the month and every job setting validated before any I/O, a bad value failing in one line."""

import datetime as dt
import importlib
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from scoring.job_settings import JobSettings

dag_module = importlib.import_module("dags.monthly_batch_scoring")
DAG = dag_module.monthly_batch_scoring_dag
PLAN = DAG.get_task("plan_run").python_callable
INTERVAL_START = dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc)


def _params(**overrides) -> dict:
    return {**{name: param.value for name, param in DAG.params.items()}, **overrides}


def _plan(conf: dict | None = None, run_type: str = "manual", **overrides) -> dict:
    """The plan task as Airflow runs it: the run's conf merged into its params, unknown keys included."""
    return PLAN(params={**_params(**overrides), **(conf or {})}, data_interval_start=INTERVAL_START,
                dag_run=SimpleNamespace(run_after=INTERVAL_START, conf=conf or {}, run_type=run_type),
                dag=SimpleNamespace(dag_id=DAG.dag_id, params=DAG.params))


def test_a_month_in_a_backfills_configuration_is_refused_not_applied_to_every_interval():
    with pytest.raises(AirflowFailException) as raised:
        _plan(conf={"month": "202607"}, run_type="backfill", month="202607")
    assert str(raised.value) == ("a backfill scores the month of each of its intervals; remove 'month' ('202607') "
                                 "from the backfill's configuration")
    assert _plan(conf={"poll_interval": 5}, run_type="backfill", poll_interval=5)["month"] == "202610"
    # The month the run-notes listener writes into each run's conf is the interval's own: it stands.
    assert _plan(conf={"month": "202610"}, run_type="backfill", month="202610")["month"] == "202610"
    assert _plan(conf={"month": "202607"}, month="202607")["month"] == "202607"  # a manual run may name one


def test_a_misspelt_configuration_key_fails_the_plan_naming_it_and_the_known_ones():
    with pytest.raises(AirflowFailException) as raised:
        _plan(conf={"mnth": "202609", "month": "202609"})
    message = str(raised.value)
    assert message.startswith("unknown run configuration key(s) 'mnth'; known: ") and "month" in message
    assert "\n" not in message
    known = {"month": "202609", "precision": "fp32"}
    assert _plan(conf=known, **known)["month"] == "202609"  # Airflow merges a run's conf into its params


def test_the_form_defaults_are_the_one_set_of_defaults():
    assert {name: DAG.params[name] for name in dag_module.JOB_PARAMS} == JobSettings().to_dict()


def test_the_plan_carries_every_setting_of_the_form_to_the_submit_task():
    plan = _plan(precision="bf16", mini_batch_size=64, logging_level="WARNING")
    assert plan["month"] == "202610"
    assert plan["job_settings"] == JobSettings(precision="bf16", mini_batch_size=64, logging_level="WARNING").to_dict()


@pytest.mark.parametrize("overrides, message", [
    ({"logging_level": "ERROR"}, "job setting logging_level='ERROR' must be one of DEBUG, INFO, WARNING"),
    ({"device": "tpu"}, "job setting device='tpu' must be one of auto, cpu, cuda"),
    ({"month": "2026-13"}, "invalid month '2026-13': expected YYYYMM"),
])
def test_a_refused_value_fails_the_plan_task_in_one_line_without_retries(overrides, message):
    with pytest.raises(AirflowFailException) as raised:
        _plan(**overrides)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
