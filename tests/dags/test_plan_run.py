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
DUE = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)  # the run due on 1 November covers October


def _params(**overrides) -> dict:
    return {**{name: param.value for name, param in DAG.params.items()}, **overrides}


def _plan(conf: dict | None = None, partition_key: str | None = None, **overrides) -> dict:
    """The plan task as Airflow runs it: the run's conf merged into its params, unknown keys included."""
    return PLAN(params={**_params(**overrides), **(conf or {})},
                dag_run=SimpleNamespace(run_after=DUE, conf=conf or {}, partition_key=partition_key),
                dag=SimpleNamespace(dag_id=DAG.dag_id, params=DAG.params))


def test_a_month_in_a_backfills_configuration_is_refused_not_applied_to_every_partition():
    with pytest.raises(AirflowFailException) as raised:
        _plan(conf={"month": "202607"}, partition_key="202609", month="202607")
    assert str(raised.value) == ("the run is partition 202609 but its configuration asks for month 202607; leave "
                                 "'month' empty (a backfill scores each of its months) or trigger 202607 as a run "
                                 "of its own")
    assert _plan(conf={"poll_interval": 5}, partition_key="202609", poll_interval=5)["month"] == "202609"
    assert _plan(conf={"month": "202609"}, partition_key="202609", month="202609")["month"] == "202609"
    assert _plan(conf={"month": "202607"}, month="202607")["month"] == "202607"  # a manual run may name one
    assert _plan(partition_key="202605")["month"] == "202605"  # or give it as the form's partition key


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
