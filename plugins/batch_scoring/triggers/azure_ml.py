"""Deferrable wait for an Azure ML (or local) job: polls until a terminal state or the deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from batch_scoring.backends.base import JobStatus
from batch_scoring.hooks.azure_ml import AzureMLHook
from scoring.progress import describe_progress


# Airflow 3.3 fails a deferred task whose trigger fires before the executor has reported the deferring
# worker's exit (~5 s with the LocalExecutor): apache/airflow#67287, #72716. A job that ends within this
# many seconds of the deferral has its event held until then.
RESUME_DWELL_S = 15.0


class AzureMLJobTrigger(BaseTrigger):
    """Yields exactly one event: success, failure, or timeout (after cancelling the job).

    :param job_name: the job to watch.
    :param azure_ml_conn_id: the Azure ML connection id.
    :param end_time: epoch seconds after which the job is cancelled and the wait fails.
    :param poll_interval: seconds between two status checks.
    :param cancel_on_kill: cancel the job when the task is killed (not when another run submitted it).
    :param resume_after: epoch seconds before which a finished job's event is held (see `RESUME_DWELL_S`).
    """

    def __init__(self, job_name: str, azure_ml_conn_id: str, end_time: float, poll_interval: float = 30.0,
                 cancel_on_kill: bool = True, resume_after: float = 0.0):
        super().__init__()
        self.job_name = job_name
        self.azure_ml_conn_id = azure_ml_conn_id
        self.end_time = end_time
        self.poll_interval = poll_interval
        self.cancel_on_kill = cancel_on_kill
        self.resume_after = resume_after

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_name": self.job_name,
                "azure_ml_conn_id": self.azure_ml_conn_id,
                "end_time": self.end_time,
                "poll_interval": self.poll_interval,
                "cancel_on_kill": self.cancel_on_kill,
                "resume_after": self.resume_after,
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
                if (hold := self.resume_after - time.time()) > 0:
                    self.log.info("job %s is %s; resuming the task in %.0fs", self.job_name, info.status, hold)
                    await asyncio.sleep(hold)
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
        """The task was killed while deferred: leave no job of this run running."""
        if self.cancel_on_kill:
            await asyncio.to_thread(self._hook().backend.cancel_job, self.job_name)


def still_running(info) -> str:
    """The wait's log line for a live job, with the job's own progress where the backend reports it."""
    progress = info.details.get("progress") or {}
    if "items_total" in progress:
        text = describe_progress(progress)
    else:
        text = progress.get("phase", "")
    if progress.get("profile"):
        text += f"; {progress['profile']}"
    return f"job {info.name} is {info.status}" + (f" ({text})" if text else "")


def job_summary(info) -> str:
    """What a finished job did, from its status data: counts, duration, throughput, the profile it ran with."""
    counts, progress = info.details.get("counts") or {}, info.details.get("progress") or {}
    parts = []
    if counts:
        parts.append(f"{counts['inputs']} images, {counts['scored']} scored, {counts['errors']} errors")
    started, finished = info.details.get("started_at"), info.details.get("finished_at")
    if started and finished and finished > started:
        seconds = finished - started
        rate = f" ({counts['inputs'] / seconds:.1f} img/s)" if counts else ""
        parts.append(f"in {seconds:.1f}s{rate}")
    if progress.get("profile"):
        parts.append(progress["profile"])
    return "; ".join(parts)


def job_event(info) -> dict[str, Any]:
    """The event payload for a terminal job, shared by the trigger and the non-deferred wait."""
    succeeded = info.status == JobStatus.COMPLETED
    message = f"job {info.name} {info.status}" + (f": {info.error}" if info.error and not succeeded else "")
    summary = job_summary(info)
    if summary:
        message += f" ({summary})" if not succeeded else f": {summary}"
    started, finished = info.details.get("started_at"), info.details.get("finished_at")
    return {"status": "success" if succeeded else "error", "job_name": info.name, "job_status": info.status,
            "url": info.url, "message": message, "counts": info.details.get("counts"),
            "duration_s": round(finished - started, 3) if started and finished and finished > started else None}
