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


def test_serialize_round_trips_to_primitives():
    trigger = AzureMLJobTrigger(job_name=NAME, azure_ml_conn_id="azure_ml_default", end_time=123.5, poll_interval=9)
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert all(isinstance(value, (str, int, float)) for value in kwargs.values())


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


def test_on_kill_cancels_the_job(client):
    trigger = AzureMLJobTrigger(job_name=NAME, azure_ml_conn_id="x", end_time=time.time() + 30, poll_interval=0.05)
    asyncio.run(trigger.on_kill())
    assert client.jobs.cancelled == [NAME]
