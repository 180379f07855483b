"""Submit, reattach, wait, cancel: the operators against an in-memory MLClient behind the real Azure ML backend."""

import threading
import time

import pytest
from airflow.sdk.exceptions import TaskDeferred

from batch_scoring.backends.azure_ml import AzureMLBackend
from batch_scoring.operators.azure_ml import (
    AzureMLJobFailed,
    AzureMLSubmitScoringJobOperator,
    AzureMLWaitForJobOperator,
)
from batch_scoring.triggers.azure_ml import AzureMLJobTrigger
from fake_ml_client import FakeMLClient
from operator_support import context, with_backend

BASE = "monthly-batch-scoring-202610"


@pytest.fixture
def client():
    return FakeMLClient()


def _submit(client, ctx=None, model_version="1"):
    operator = with_backend(AzureMLSubmitScoringJobOperator(
        task_id="submit", job_name=BASE, month="202610",
        data_asset_name="monthly-images", data_asset_version="202610", model_name="shapes-classifier",
        model_version=model_version, compute_name="gpu-cluster", job_settings={"mini_batch_size": 8},
    ), AzureMLBackend(client))
    ctx = ctx or context()
    return operator.execute(ctx), ctx


def _wait(client, **kwargs):
    return with_backend(AzureMLWaitForJobOperator(task_id="wait", job_name=BASE, **kwargs), AzureMLBackend(client))


def test_first_submit_creates_the_job_and_pushes_its_id_and_link_first(client):
    name, ctx = _submit(client)
    assert name == BASE and client.jobs.created == [BASE]
    assert ctx["ti"].xcom["job_url"] == f"https://ml.azure.com/runs/{BASE}"  # the Studio link's
    assert ctx["ti"].xcom["job_spec"]["name"] == BASE  # what the wait resubmits from, after a failure
    assert ctx["ti"].xcom["job_spec"]["settings"]["mini_batch_size"] == 8


def test_a_retry_reattaches_to_a_running_job(client):
    _submit(client)
    client.jobs.set_status(BASE, "Running")
    name, _ = _submit(client)
    assert name == BASE and client.jobs.created == [BASE]


def test_a_retry_after_completion_submits_nothing(client):
    _submit(client)
    client.jobs.set_status(BASE, "Completed")
    assert _submit(client)[0] == BASE and client.jobs.created == [BASE]


def test_a_retry_after_failure_resubmits_once_with_a_new_suffix(client):
    _submit(client)
    client.jobs.set_status(BASE, "Failed", error="node preempted")
    assert _submit(client)[0] == f"{BASE}-r1"
    assert _submit(client)[0] == f"{BASE}-r1"  # the resubmitted job is live: reattach, no third job
    client.jobs.set_status(f"{BASE}-r1", "Canceled")
    assert _submit(client)[0] == f"{BASE}-r2"
    assert client.jobs.created == [BASE, f"{BASE}-r1", f"{BASE}-r2"]


def test_two_runs_of_one_month_racing_end_on_one_job(client, monkeypatch):
    _submit(client)  # the other run won the race
    client.jobs.set_status(BASE, "Running")
    monkeypatch.setattr(AzureMLBackend, "job_attempts", lambda self, base: [])  # looked before it submitted
    name, ctx = _submit(client)
    assert name == BASE and client.jobs.created == [BASE]
    assert ctx["ti"].xcom["job_url"] == f"https://ml.azure.com/runs/{BASE}"


def test_a_new_model_version_rescores_the_month_with_a_new_attempt(client):
    _submit(client)
    client.jobs.set_status(BASE, "Completed")
    assert _submit(client, model_version="2")[0] == f"{BASE}-r1"
    assert client.jobs.jobs[f"{BASE}-r1"].tags["model"] == "shapes-classifier:2"
    client.jobs.set_status(f"{BASE}-r1", "Completed")
    assert _submit(client, model_version="2")[0] == f"{BASE}-r1"  # done with that model: nothing new
    # Back to version 1: a new attempt, since only the newest attempt of a month publishes.
    assert _submit(client, model_version="1")[0] == f"{BASE}-r2"


def test_a_live_job_of_another_model_is_not_joined_nor_doubled(client):
    _submit(client)
    client.jobs.set_status(BASE, "Running")
    with pytest.raises(AzureMLJobFailed, match="with model shapes-classifier:1, not shapes-classifier:2"):
        _submit(client, model_version="2")
    assert client.jobs.created == [BASE]


def test_a_bad_month_is_refused_before_any_call(client):
    operator = with_backend(AzureMLSubmitScoringJobOperator(
        task_id="submit", job_name="x", month="2026-13", data_asset_name="a", data_asset_version="v",
        model_name="m", model_version="1", compute_name="c"), AzureMLBackend(client))
    with pytest.raises(ValueError, match="invalid month '2026-13'"):
        operator.execute(context())
    assert client.jobs.created == []


@pytest.mark.parametrize("status", ["Failed", "Canceled"])
def test_failed_and_canceled_raise_with_the_jobs_message_and_link(client, status):
    _submit(client)
    client.jobs.set_status(BASE, status, error="CUDA out of memory" if status == "Failed" else None)
    with pytest.raises(AzureMLJobFailed) as caught:
        _wait(client).execute(context())
    assert status in str(caught.value) and f"https://ml.azure.com/runs/{BASE}" in str(caught.value)
    if status == "Failed":
        assert "CUDA out of memory" in str(caught.value)


def test_non_deferred_wait_polls_until_completed(client):
    _submit(client)
    client.jobs.set_status(BASE, "Running")
    threading.Timer(0.3, client.jobs.set_status, args=(BASE, "Completed")).start()
    event = _wait(client, poll_interval=0.05, deferrable=False).execute(context())
    assert event["status"] == "success" and event["job_status"] == "Completed"


def test_a_short_job_is_seen_ending_within_seconds_with_the_default_poll_interval(client):
    _submit(client)
    client.jobs.set_status(BASE, "Running")
    threading.Timer(3, client.jobs.set_status, args=(BASE, "Completed")).start()
    started = time.monotonic()
    event = _wait(client, deferrable=False).execute(context())  # poll_interval: the default 30 s
    assert event["job_status"] == "Completed"
    assert time.monotonic() - started < 8  # was 30: the first check after the start came at the poll interval


def test_timeout_cancels_the_job(client):
    _submit(client)
    client.jobs.set_status(BASE, "Running")
    with pytest.raises(AzureMLJobFailed, match="it was cancelled"):
        _wait(client, poll_interval=0.05, timeout=0.2, deferrable=False).execute(context())
    assert client.jobs.cancelled == [BASE]


def test_deferrable_wait_hands_over_to_the_trigger(client):
    _submit(client)
    client.jobs.set_status(BASE, "Running")
    with pytest.raises(TaskDeferred) as caught:
        _wait(client, poll_interval=7, timeout=60, deferrable=True).execute(context())
    trigger = caught.value.trigger
    assert isinstance(trigger, AzureMLJobTrigger)
    assert trigger.job_name == BASE and trigger.poll_interval == 7 and trigger.end_time > time.time()


def test_an_already_finished_job_is_not_deferred(client):
    _submit(client)
    client.jobs.set_status(BASE, "Completed")
    assert _wait(client, deferrable=True).execute(context())["status"] == "success"


def test_execute_complete_raises_on_an_error_event(client):
    with pytest.raises(AzureMLJobFailed, match="job x Failed: boom"):
        _wait(client).execute_complete(context(), {"status": "error", "message": "job x Failed: boom", "url": "u"})


def test_on_kill_cancels_the_job(client):
    _submit(client)
    client.jobs.set_status(BASE, "Running")
    _wait(client).on_kill()
    assert client.jobs.cancelled == [BASE]


def test_every_name_and_id_is_templated():
    assert {"job_name", "month", "data_asset_name", "data_asset_version", "model_name", "model_version",
            "compute_name", "job_settings"} <= set(AzureMLSubmitScoringJobOperator.template_fields)
    assert "job_name" in AzureMLWaitForJobOperator.template_fields


def test_the_studio_link_is_the_jobs_url_from_xcom(monkeypatch):
    from batch_scoring.operators import azure_ml

    seen = {}

    def get_value(*, key, ti_key):
        seen["key"] = key
        return f"https://ml.azure.com/runs/{BASE}"

    monkeypatch.setattr(azure_ml.XCom, "get_value", staticmethod(get_value))
    operator = AzureMLWaitForJobOperator(task_id="wait", job_name=BASE)
    links = {link.name: link for link in operator.operator_extra_links}
    assert links["Azure ML Studio"].get_link(operator, ti_key=None) == f"https://ml.azure.com/runs/{BASE}"
    assert seen["key"] == "job_url"


def _failed_job_and_its_spec(client):
    name, ctx = _submit(client)
    client.jobs.set_status(BASE, "Failed", error="node preempted")
    return ctx["ti"].xcom["job_spec"]


def test_the_first_try_of_the_wait_reports_a_failed_job_and_submits_nothing(client):
    spec = _failed_job_and_its_spec(client)
    with pytest.raises(AzureMLJobFailed, match="node preempted"):
        _wait(client, job_spec=spec).execute(context(try_number=1))
    assert client.jobs.created == [BASE]


@pytest.mark.parametrize("status", ["Failed", "Canceled"])
def test_a_retry_of_the_wait_submits_the_next_attempt_and_waits_on_it(client, status):
    spec = _failed_job_and_its_spec(client)
    client.jobs.set_status(BASE, status)
    retry = context(try_number=2)
    with pytest.raises(TaskDeferred) as deferred:
        _wait(client, job_spec=spec, deferrable=True).execute(retry)
    assert client.jobs.created == [BASE, f"{BASE}-r1"]
    assert deferred.value.trigger.job_name == f"{BASE}-r1"
    assert retry["ti"].xcom["job_url"] == f"https://ml.azure.com/runs/{BASE}-r1"  # the link follows the attempt
    submitted = client.jobs.jobs[f"{BASE}-r1"].submitted
    assert submitted.tags["model"] == "shapes-classifier:1" and submitted.name == f"{BASE}-r1"


def test_a_not_responding_attempt_is_cancelled_before_the_next_one_starts(client):
    _submit(client)
    client.jobs.set_status(BASE, "NotResponding")
    assert _submit(client)[0] == f"{BASE}-r1"
    assert client.jobs.cancelled == [BASE] and client.jobs.created == [BASE, f"{BASE}-r1"]


def test_a_cancelled_attempt_still_ending_is_neither_joined_nor_run_beside(client, monkeypatch):
    import batch_scoring.attempts as attempts

    monkeypatch.setattr(attempts, "ENDING_POLL_S", 0.01)
    _submit(client)
    client.jobs.set_status(BASE, "NotResponding")
    client.jobs.cancel_lingers = 3  # the cancel answered done; the job reads CancelRequested three more times
    assert _submit(client)[0] == f"{BASE}-r1"
    assert client.jobs.jobs[BASE].status == "Canceled"  # the next attempt came after it had ended
    assert client.jobs.created == [BASE, f"{BASE}-r1"]


def test_an_attempt_that_stays_cancel_requested_leaves_the_next_one_to_the_tasks_retry(client, monkeypatch):
    import batch_scoring.attempts as attempts

    monkeypatch.setattr(attempts, "ENDING_POLL_S", 0.01)
    monkeypatch.setattr(attempts, "ENDING_WAIT_S", 0.05)
    _submit(client)
    client.jobs.set_status(BASE, "NotResponding")
    client.jobs.cancel_lingers = 10**6
    with pytest.raises(attempts.AttemptEnding, match=f"job {BASE} is still CancelRequested after 0s"):
        _submit(client)
    assert client.jobs.created == [BASE]


def test_a_completed_month_whose_blobs_changed_is_scored_again(client):
    def submit(fingerprint):
        operator = with_backend(AzureMLSubmitScoringJobOperator(
            task_id="submit", job_name=BASE, month="202610", data_asset_name="monthly-images",
            data_asset_version="202610", model_name="shapes-classifier", model_version="1",
            compute_name="gpu-cluster", inputs_fingerprint=fingerprint), AzureMLBackend(client))
        return operator.execute(context())

    assert submit("aaa") == BASE
    client.jobs.set_status(BASE, "Completed")
    assert submit("aaa") == BASE
    assert submit("bbb") == f"{BASE}-r1"  # a blob landed after the month completed: never stuck
    assert client.jobs.jobs[f"{BASE}-r1"].tags["inputs"] == "bbb"


def test_killing_the_wait_of_a_run_that_only_reattached_leaves_the_job_running(client):
    _submit(client, context(run_id="scheduled__2026-11-01"))
    client.jobs.set_status(BASE, "Running")
    waiter = _wait(client, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        waiter.execute(context(run_id="manual__2026-11-26"))
    assert deferred.value.trigger.cancel_on_kill is False
    waiter.on_kill()
    assert client.jobs.cancelled == []
    owner = _wait(client, deferrable=True)
    with pytest.raises(TaskDeferred):
        owner.execute(context(run_id="scheduled__2026-11-01"))
    owner.on_kill()
    assert client.jobs.cancelled == [BASE]
