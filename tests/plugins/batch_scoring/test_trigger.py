"""The deferred wait: serialisable, exactly one event, cancels at its deadline and when killed."""

import asyncio
import importlib
import time

import pytest

from batch_scoring.backends.azure_ml import AzureMLBackend
from batch_scoring.hooks.azure_ml import AzureMLHook
from batch_scoring.triggers.azure_ml import AzureMLJobTrigger
from fake_ml_client import FakeMLClient

NAME = "monthly-batch-scoring-202610"


@pytest.fixture
def client(monkeypatch):
    client = FakeMLClient()

    def hook(self):
        hook = AzureMLHook(azure_ml_conn_id=self.azure_ml_conn_id)
        hook.__dict__["backend"] = AzureMLBackend(client)
        return hook

    monkeypatch.setattr(AzureMLJobTrigger, "_hook", hook)
    from fake_ml_client import FakeJob

    client.jobs.jobs[NAME] = FakeJob(NAME, "Running", f"https://ml.azure.com/runs/{NAME}")
    return client


async def _events(trigger, limit=5):
    events = []
    async for event in trigger.run():
        events.append(event.payload)
        if len(events) >= limit:
            break
    return events


def test_serialize_carries_every_parameter_of_the_signature_with_its_value():
    """Each parameter set to a value unlike its default: one lost in serialize() (cancel_on_kill, say, whose loss
    would let a kill cancel another run's job) comes back as the default and fails here."""
    import inspect

    values = {"job_name": NAME, "azure_ml_conn_id": "other_conn", "end_time": 123.5, "poll_interval": 9.0,
              "cancel_on_kill": False, "resume_after": 77.0, "queued_warning_s": 11.0, "stalled_timeout_s": 22.0}
    parameters = inspect.signature(AzureMLJobTrigger.__init__).parameters
    assert set(values) == set(parameters) - {"self"}  # a new parameter must be added here too
    assert all(values[name] != parameters[name].default for name in values)
    classpath, kwargs = AzureMLJobTrigger(**values).serialize()
    assert kwargs == values
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, values)
    assert all(isinstance(value, (str, int, float, bool)) for value in kwargs.values())


def test_the_month_folder_trigger_serializes_every_parameter():
    import inspect

    from batch_scoring.triggers.month_folder import MonthFolderTrigger

    values = {"wasb_conn_id": "w", "container": "c", "month": "202610", "rule": "quiet", "quiet_s": 5.0,
              "poll_s": 2.0, "end_time": 99.0}
    assert set(values) == set(inspect.signature(MonthFolderTrigger.__init__).parameters) - {"self"}
    assert MonthFolderTrigger(**values).serialize()[1] == values


def test_yields_exactly_one_success_event(client):
    trigger = AzureMLJobTrigger(job_name=NAME, azure_ml_conn_id="x", end_time=time.time() + 30, poll_interval=0.05)

    async def finish_later():
        await asyncio.sleep(0.2)
        client.jobs.set_status(NAME, "Completed")

    async def scenario():
        asyncio.get_running_loop().create_task(finish_later())
        return await _events(trigger)

    events = asyncio.run(scenario())
    assert len(events) == 1 and events[0]["status"] == "success" and events[0]["job_status"] == "Completed"


def test_a_failed_job_yields_one_error_event_with_its_message(client):
    client.jobs.set_status(NAME, "Failed", error="disk full")
    trigger = AzureMLJobTrigger(job_name=NAME, azure_ml_conn_id="x", end_time=time.time() + 30, poll_interval=0.05)
    events = asyncio.run(_events(trigger))
    assert len(events) == 1 and events[0]["status"] == "error" and "disk full" in events[0]["message"]


def test_deadline_cancels_the_job_and_yields_one_error(client):
    trigger = AzureMLJobTrigger(job_name=NAME, azure_ml_conn_id="x", end_time=time.time() + 0.2, poll_interval=0.05)
    events = asyncio.run(_events(trigger))
    assert len(events) == 1 and "it was cancelled" in events[0]["message"]
    assert client.jobs.cancelled == [NAME]


def test_on_kill_sends_the_cancel_without_waiting_for_it(client):
    trigger = AzureMLJobTrigger(job_name=NAME, azure_ml_conn_id="x", end_time=time.time() + 30, poll_interval=0.05)
    asyncio.run(trigger.on_kill())
    assert client.jobs.cancel_requested == [NAME] and client.jobs.cancelled == []  # the poller was never awaited


def test_transient_errors_are_retried_with_backoff_and_a_warning(client, monkeypatch, capsys):
    from azure.core.exceptions import HttpResponseError, ServiceRequestError

    import batch_scoring.triggers.azure_ml as trigger_module

    monkeypatch.setattr(trigger_module, "wait_exponential", lambda **_: (lambda state: 0.01))
    answers = [ServiceRequestError("connection reset"), HttpResponseError(message="busy", response=None)]
    answers[1].status_code = 503
    real_get = client.jobs.get

    def flaky_get(name):
        if answers:
            raise answers.pop(0)
        client.jobs.set_status(NAME, "Completed")
        return real_get(name)

    monkeypatch.setattr(client.jobs, "get", flaky_get)
    trigger = AzureMLJobTrigger(job_name=NAME, azure_ml_conn_id="x", end_time=time.time() + 30, poll_interval=0.05)
    events = asyncio.run(_events(trigger))
    assert len(events) == 1 and events[0]["status"] == "success"
    assert capsys.readouterr().out.count("status check failed") == 2  # the triggerer's log (structlog)


def test_a_lasting_refusal_is_not_retried(client, monkeypatch):
    from azure.core.exceptions import HttpResponseError

    refusal = HttpResponseError(message="forbidden", response=None)
    refusal.status_code = 403

    def refuse(name):
        raise refusal

    monkeypatch.setattr(client.jobs, "get", refuse)
    trigger = AzureMLJobTrigger(job_name=NAME, azure_ml_conn_id="x", end_time=time.time() + 30, poll_interval=0.05)
    with pytest.raises(HttpResponseError, match="forbidden"):
        asyncio.run(_events(trigger))


def test_the_client_is_built_off_the_event_loop(client, monkeypatch):
    import threading

    built_on = []
    real_hook = AzureMLJobTrigger._connected_hook

    def recording_hook(self):
        built_on.append(threading.current_thread() is threading.main_thread())
        return real_hook(self)

    monkeypatch.setattr(AzureMLJobTrigger, "_connected_hook", recording_hook)
    client.jobs.set_status(NAME, "Completed")
    trigger = AzureMLJobTrigger(job_name=NAME, azure_ml_conn_id="x", end_time=time.time() + 30, poll_interval=0.05)
    asyncio.run(_events(trigger))
    assert built_on == [False]


def test_a_paused_or_unknown_job_is_cancelled_after_its_own_timeout(client):
    for status in ("Paused", "Unknown"):
        client.jobs.set_status(NAME, status)
        client.jobs.cancel_requested.clear()
        trigger = AzureMLJobTrigger(job_name=NAME, azure_ml_conn_id="x", end_time=time.time() + 3600,
                                    poll_interval=0.05, stalled_timeout_s=0.2)
        events = asyncio.run(_events(trigger))
        assert len(events) == 1 and events[0]["status"] == "error", status
        assert events[0]["message"].startswith(f"job {NAME} has been {status} for ")
        assert "(limit 0s); it was cancelled" in events[0]["message"]
        assert client.jobs.cancel_requested == [NAME]


def test_a_long_queue_is_reported_with_its_likely_causes_and_the_wait_goes_on(client, capsys):
    client.jobs.set_status(NAME, "Queued")
    trigger = AzureMLJobTrigger(job_name=NAME, azure_ml_conn_id="x", end_time=time.time() + 30, poll_interval=0.05,
                                queued_warning_s=0.1)

    logged: list[str] = []

    async def start_once_reported():  # not after a fixed time: a loaded machine may poll late
        while not any("has been Queued" in line for line in logged):
            logged.extend(capsys.readouterr().out.splitlines())
            await asyncio.sleep(0.02)
        client.jobs.set_status(NAME, "Completed")

    async def scenario():
        asyncio.get_running_loop().create_task(start_once_reported())
        return await _events(trigger)

    events = asyncio.run(scenario())
    assert events[0]["status"] == "success"  # the warning did not end the wait
    warnings = [line for line in logged if "has been Queued" in line]
    assert warnings and "no quota for its VM size" in warnings[0] and "preempted" in warnings[0]
