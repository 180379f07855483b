"""Deferrable wait for an Azure ML (or local) job: polls until a terminal state or the deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from batch_scoring.hooks.azure_ml import AzureMLHook
from batch_scoring.job_watch import CANCEL_REQUEST, QUEUED_WARNING_S, STALLED_TIMEOUT_S, JobWatch
from scoring.transient import is_transient


TRANSIENT_RETRY_S = 600.0  # a workspace that does not answer is asked again, with backoff, for this long


class AzureMLJobTrigger(BaseTrigger):
    """Yields exactly one event: success, failure, or timeout (after cancelling the job).

    :param job_name: the job to watch.
    :param azure_ml_conn_id: the Azure ML connection id.
    :param end_time: epoch seconds after which the job is cancelled and the wait fails.
    :param poll_interval: the most seconds between two status checks (fewer while the job is young: `next_poll_s`).
    :param cancel_on_kill: cancel the job when the task is killed (not when another run submitted it).
    :param resume_after: epoch seconds before which a finished job's event is held (see `RESUME_DWELL_S`).
    :param queued_warning_s: a job Queued longer than this is reported with its likely causes at each poll.
    :param stalled_timeout_s: a job Paused or Unknown longer than this is cancelled and the wait fails.
    """

    def __init__(self, job_name: str, azure_ml_conn_id: str, end_time: float, poll_interval: float = 30.0,
                 cancel_on_kill: bool = True, resume_after: float = 0.0,
                 queued_warning_s: float = QUEUED_WARNING_S, stalled_timeout_s: float = STALLED_TIMEOUT_S):
        super().__init__()
        self.job_name = job_name
        self.azure_ml_conn_id = azure_ml_conn_id
        self.end_time = end_time
        self.poll_interval = poll_interval
        self.cancel_on_kill = cancel_on_kill
        self.resume_after = resume_after
        self.queued_warning_s = queued_warning_s
        self.stalled_timeout_s = stalled_timeout_s

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
                "queued_warning_s": self.queued_warning_s,
                "stalled_timeout_s": self.stalled_timeout_s,
            },
        )

    def _hook(self) -> AzureMLHook:
        return AzureMLHook(azure_ml_conn_id=self.azure_ml_conn_id)

    def _connected_hook(self) -> AzureMLHook:
        """The hook with its client built: reads the connection, imports the SDK (blocking work)."""
        hook = self._hook()
        hook.backend  # noqa: B018 - built here, in the caller's thread
        return hook

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Everything the SDKs do is synchronous: build and call them in a thread, never on the triggerer's loop.
        hook = await asyncio.to_thread(self._connected_hook)
        watch = JobWatch(self.job_name, end_time=self.end_time, poll_interval=self.poll_interval,
                         started=time.monotonic(), queued_warning_s=self.queued_warning_s,
                         stalled_timeout_s=self.stalled_timeout_s)
        while True:
            info = await self._get_job(hook)
            verdict = watch.after(info, now=time.time(), monotonic=time.monotonic())
            if verdict.cancel:
                await asyncio.to_thread(hook.cancel_job, self.job_name, wait=verdict.cancel != CANCEL_REQUEST)
            if verdict.event is not None:
                if info.terminal and (hold := self.resume_after - time.time()) > 0:
                    self.log.info("job %s is %s; resuming the task in %.0fs", self.job_name, info.status, hold)
                    await asyncio.sleep(hold)
                yield TriggerEvent(verdict.event)
                return
            if verdict.warning:
                self.log.warning("%s", verdict.warning)
            self.log.info("%s", verdict.line)
            await asyncio.sleep(verdict.pause_s)

    async def _get_job(self, hook: AzureMLHook):
        """The job's state; a workspace that does not answer for a while is asked again, with backoff, for up to
        `TRANSIENT_RETRY_S` (a 5xx, a throttle, a dropped connection must not fail a wait of hours)."""
        def log_retry(state) -> None:
            error = state.outcome.exception()
            self.log.warning("job %s: status check failed (%s: %s); asking again in %.0fs", self.job_name,
                             type(error).__name__, " ".join(str(error).split())[:200], state.next_action.sleep)

        async for attempt in AsyncRetrying(retry=retry_if_exception(is_transient), reraise=True,
                                           wait=wait_exponential(multiplier=2, max=60),
                                           stop=stop_after_delay(TRANSIENT_RETRY_S), before_sleep=log_retry):
            with attempt:
                return await asyncio.to_thread(hook.get_job, self.job_name)

    async def on_kill(self) -> None:
        """The task was killed while deferred: ask the workspace to cancel, without waiting for it to end
        (the triggerer gives on_kill seconds, a cancel can take minutes)."""
        if self.cancel_on_kill:
            await asyncio.to_thread(lambda: self._connected_hook().cancel_job(self.job_name, wait=False))
