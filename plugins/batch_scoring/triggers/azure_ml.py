"""Deferrable wait for an Azure ML (or local) job: polls until a terminal state or the deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from batch_scoring.backends.base import JobStatus
from batch_scoring.hooks.azure_ml import AzureMLHook


class AzureMLJobTrigger(BaseTrigger):
    """Yields exactly one event: success, failure, or timeout (after cancelling the job).

    :param job_name: the job to watch.
    :param azure_ml_conn_id: the Azure ML connection id.
    :param end_time: epoch seconds after which the job is cancelled and the wait fails.
    :param poll_interval: seconds between two status checks.
    """

    def __init__(self, job_name: str, azure_ml_conn_id: str, end_time: float, poll_interval: float = 30.0):
        super().__init__()
        self.job_name = job_name
        self.azure_ml_conn_id = azure_ml_conn_id
        self.end_time = end_time
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_name": self.job_name,
                "azure_ml_conn_id": self.azure_ml_conn_id,
                "end_time": self.end_time,
                "poll_interval": self.poll_interval,
            },
        )

    def _hook(self) -> AzureMLHook:
        return AzureMLHook(azure_ml_conn_id=self.azure_ml_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        while True:
            # The SDKs are synchronous: poll in a thread so the triggerer's loop never blocks.
            info = await asyncio.to_thread(hook.backend.get_job, self.job_name)
            if info.terminal:
                yield TriggerEvent(job_event(info))
                return
            if time.time() >= self.end_time:
                await asyncio.to_thread(hook.backend.cancel_job, self.job_name)
                yield TriggerEvent({
                    "status": "error", "job_name": self.job_name, "job_status": info.status, "url": info.url,
                    "message": f"job {self.job_name} still {info.status} at the wait's deadline; it was cancelled",
                })
                return
            self.log.info("%s; next check in %ss", still_running(info), self.poll_interval)
            await asyncio.sleep(min(self.poll_interval, max(0.0, self.end_time - time.time())) or 0.01)

    async def on_kill(self) -> None:
        """The task was killed while deferred: leave no job running."""
        await asyncio.to_thread(self._hook().backend.cancel_job, self.job_name)


def still_running(info) -> str:
    """The wait's log line for a live job, with the job's own progress where the backend has it."""
    progress = info.details.get("progress")
    return f"job {info.name} is {info.status}" + (f" ({progress})" if progress else "")


def job_event(info) -> dict[str, Any]:
    """The event payload for a terminal job, shared by the trigger and the non-deferred wait."""
    succeeded = info.status == JobStatus.COMPLETED
    message = f"job {info.name} {info.status}" + (f": {info.error}" if info.error and not succeeded else "")
    return {"status": "success" if succeeded else "error", "job_name": info.name, "job_status": info.status,
            "url": info.url, "message": message}
