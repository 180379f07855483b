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


def _plan(**overrides) -> dict:
    return PLAN(params=_params(**overrides), data_interval_start=INTERVAL_START,
                dag_run=SimpleNamespace(run_after=INTERVAL_START), dag=SimpleNamespace(dag_id=DAG.dag_id))


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
