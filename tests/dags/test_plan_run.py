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


def _plan(conf: dict | None = None, **overrides) -> dict:
    return PLAN(params=_params(**overrides), data_interval_start=INTERVAL_START,
                dag_run=SimpleNamespace(run_after=INTERVAL_START, conf=conf or {}),
                dag=SimpleNamespace(dag_id=DAG.dag_id))


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


def _check_folder(monkeypatch, azurite, container: str):
    import json

    monkeypatch.setenv("AIRFLOW_CONN_WASB_DEFAULT", json.dumps(
        {"conn_type": "wasb", "extra": {"connection_string": azurite.connection_string}}))
    check = DAG.get_task("check_month_folder").python_callable
    return check("202610", params=_params(images_container=container))


def test_an_empty_month_fails_the_folder_check_at_once_naming_container_and_prefix(monkeypatch, azurite,
                                                                                   blob_service):
    blob_service.create_container("emptymonth")
    with pytest.raises(AirflowFailException) as raised:
        _check_folder(monkeypatch, azurite, "emptymonth")
    assert str(raised.value) == ("no blobs under emptymonth/202610/ (wasb_default): upload the month's images there, "
                                 "then clear this task")


def test_the_folder_fingerprint_changes_when_a_blob_is_added_or_replaced(monkeypatch, azurite, blob_service):
    container = blob_service.create_container("fingerprint")
    container.upload_blob("202610/a.jpg", b"a")
    first = _check_folder(monkeypatch, azurite, "fingerprint")
    assert first["items"] == 1 and first == _check_folder(monkeypatch, azurite, "fingerprint")
    container.upload_blob("202610/a.jpg", b"new bytes", overwrite=True)
    replaced = _check_folder(monkeypatch, azurite, "fingerprint")
    container.upload_blob("202610/late.jpg", b"late")
    added = _check_folder(monkeypatch, azurite, "fingerprint")
    assert len({first["fingerprint"], replaced["fingerprint"], added["fingerprint"]}) == 3
    assert added["items"] == 2
