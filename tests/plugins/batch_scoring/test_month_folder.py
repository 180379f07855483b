"""The folder check on Azurite: a month is complete by the run's rule; else it waits deferred, or fails in a line."""

import asyncio
import json
import time

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from batch_scoring.operators.month_folder import MonthFolderCompleteOperator
from batch_scoring.triggers.month_folder import MonthFolderTrigger
from operator_support import context
from scoring.items import MONTH_MARKER


@pytest.fixture
def wasb(monkeypatch, azurite):
    monkeypatch.setenv("AIRFLOW_CONN_WASB_DEFAULT", json.dumps(
        {"conn_type": "wasb", "extra": {"connection_string": azurite.connection_string}}))


def _check(container: str, **kwargs) -> dict:
    operator = MonthFolderCompleteOperator(task_id="check_month_folder", month="202610", container=container,
                                           **kwargs)
    return operator.execute(context())


def _trigger_events(container: str, **kwargs) -> dict:
    trigger = MonthFolderTrigger(wasb_conn_id="wasb_default", container=container, month="202610",
                                 **{"rule": "marker", "quiet_s": 0, "poll_s": 0.2, "end_time": time.time() + 30,
                                    **kwargs})

    async def first():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(first())


def test_an_empty_month_with_no_wait_fails_at_once_naming_container_and_what_is_missing(wasb, blob_service):
    blob_service.create_container("emptymonth")
    with pytest.raises(AirflowFailException) as raised:
        _check("emptymonth", timeout_hours=0)
    assert str(raised.value) == ("emptymonth/202610/ is not complete after 0 h (rule marker): no blobs under the "
                                 "month yet; complete the upload, then clear this task")


def test_a_month_without_its_marker_defers_and_the_trigger_fires_when_the_marker_lands(wasb, blob_service):
    container = blob_service.create_container("markerwait")
    container.upload_blob("202610/a.jpg", b"a")
    with pytest.raises(TaskDeferred) as deferred:  # no worker slot is held while the month uploads
        _check("markerwait")
    assert isinstance(deferred.value.trigger, MonthFolderTrigger)
    assert deferred.value.trigger.serialize()[1]["rule"] == "marker"

    import threading

    threading.Timer(1.0, container.upload_blob, args=(f"202610/{MONTH_MARKER}", b"")).start()
    event = _trigger_events("markerwait")
    assert event["status"] == "complete" and event["items"] == 1  # the marker is not an input


def test_a_quiet_month_is_complete_only_once_its_newest_blob_is_old_enough(wasb, blob_service):
    container = blob_service.create_container("quietwait")
    container.upload_blob("202610/a.jpg", b"a")
    with pytest.raises(TaskDeferred):
        _check("quietwait", rule="quiet", quiet_minutes=2 / 60)
    started = time.monotonic()
    event = _trigger_events("quietwait", rule="quiet", quiet_s=2.0)
    assert event["status"] == "complete" and time.monotonic() - started >= 0.5


def test_the_wait_gives_up_at_its_deadline_in_one_line(wasb, blob_service):
    blob_service.create_container("neverdone").upload_blob("202610/a.jpg", b"a")
    event = _trigger_events("neverdone", end_time=time.time() + 1)
    assert event["status"] == "timeout"
    operator = MonthFolderCompleteOperator(task_id="check", month="202610", container="neverdone", timeout_hours=1)
    with pytest.raises(AirflowFailException, match=r"^neverdone/202610/ is not complete after 1 h \(rule marker\): "
                                                   r"no _SUCCESS marker yet"):
        operator.execute_complete(context(), event)


def test_the_fingerprint_changes_when_a_blob_is_added_or_replaced_and_not_when_the_marker_lands(wasb, blob_service):
    container = blob_service.create_container("fingerprint")
    container.upload_blob("202610/a.jpg", b"a")
    first = _check("fingerprint", rule="any")
    assert first["items"] == 1 and first == _check("fingerprint", rule="any")
    container.upload_blob(f"202610/{MONTH_MARKER}", b"")
    assert _check("fingerprint") == first
    container.upload_blob("202610/a.jpg", b"new bytes", overwrite=True)
    replaced = _check("fingerprint")
    container.upload_blob("202610/late.jpg", b"late")
    added = _check("fingerprint")
    assert len({first["fingerprint"], replaced["fingerprint"], added["fingerprint"]}) == 3
    assert added["items"] == 2
