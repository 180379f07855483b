"""Deferrable wait for an Azure ML (or local) job: polls until a terminal state or the deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from batch_scoring.backends.base import STALLED_STATUSES, JobStatus
from batch_scoring.hooks.azure_ml import AzureMLHook
from scoring.progress import describe_progress
from scoring.transient import is_transient


# Airflow 3.3 fails a deferred task whose trigger fires before the executor has reported the deferring
# worker's exit (~5 s with the LocalExecutor): apache/airflow#67287, #72716. A job that ends within this
# many seconds of the deferral has its event held until then.
RESUME_DWELL_S = 15.0
TRANSIENT_RETRY_S = 600.0
QUEUED_WARNING_S = 1800.0  # a job Queued this long is reported, each poll, with the likely causes
STALLED_TIMEOUT_S = 3600.0  # a job Paused or Unknown this long is cancelled and the wait fails
MIN_POLL_S = 2.0  # the first checks of a job


def next_poll_s(poll_interval: float, watched_s: float) -> float:
    """Seconds to the next status check: a tenth of how long the job has been watched, at least MIN_POLL_S, at
    most `poll_interval`. A 12 s month ends within 2 s of the job; a 3-hour one is asked every `poll_interval`."""
    return min(poll_interval, max(MIN_POLL_S, watched_s / 10))


class StateClock:
    """How long the job has been in the state it is in now, as far as this wait has seen."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.since = 0.0

    def seconds_in(self, status: str, now: float) -> float:
        if status != self.status:
            self.status, self.since = status, now
        return now - self.since


def stall_check(info, seconds: float, *, queued_warning_s: float = QUEUED_WARNING_S,
                stalled_timeout_s: float = STALLED_TIMEOUT_S) -> tuple[str | None, bool]:
    """(warning line or None, give up?) for a live job that has been in its state for `seconds`."""
    if info.status in STALLED_STATUSES:
        if seconds >= stalled_timeout_s:
            return (f"job {info.name} has been {info.status} for {seconds:.0f}s (limit {stalled_timeout_s:.0f}s); "
                    f"it was cancelled: look at the job in the Studio ({info.url})"), True
        return (f"job {info.name} is {info.status} for {seconds:.0f}s: neither running nor ended; cancelled after "
                f"{stalled_timeout_s:.0f}s"), False
    if info.status == JobStatus.QUEUED and seconds >= queued_warning_s:
        return (f"job {info.name} has been Queued for {seconds / 60:.0f} min: the cluster likely has no quota "
                "for its VM size or cannot get low-priority nodes (preempted); check the compute's quota and "
                "state in the Studio"), False
    return None, False


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
        clock = StateClock()
        watching_since = time.monotonic()
        while True:
            info = await self._get_job(hook)
            if info.terminal:
                if (hold := self.resume_after - time.time()) > 0:
                    self.log.info("job %s is %s; resuming the task in %.0fs", self.job_name, info.status, hold)
                    await asyncio.sleep(hold)
                yield TriggerEvent(job_event(info))
                return
            if time.time() >= self.end_time:
                await asyncio.to_thread(hook.cancel_job, self.job_name)
                yield TriggerEvent({
                    "status": "error", "job_name": self.job_name, "job_status": info.status, "url": info.url,
                    "message": f"job {self.job_name} still {info.status} at the wait's deadline; it was cancelled",
                })
                return
            warning, give_up = stall_check(info, clock.seconds_in(info.status, time.time()),
                                           queued_warning_s=self.queued_warning_s,
                                           stalled_timeout_s=self.stalled_timeout_s)
            if give_up:
                await asyncio.to_thread(hook.cancel_job, self.job_name, wait=False)
                yield TriggerEvent({"status": "error", "job_name": self.job_name, "job_status": info.status,
                                    "url": info.url, "message": warning})
                return
            if warning:
                self.log.warning("%s", warning)
            pause = next_poll_s(self.poll_interval, time.monotonic() - watching_since)
            self.log.info("%s; next check in %.0fs", still_running(info), pause)
            await asyncio.sleep(min(pause, max(0.0, self.end_time - time.time())) or 0.01)

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


def job_duration(info) -> float | None:
    """Seconds from the job's start to its end, where its status data records both."""
    started, finished = info.details.get("started_at"), info.details.get("finished_at")
    return finished - started if started and finished and finished > started else None


def job_summary(info) -> str:
    """What a finished job did, from its status data: counts, duration, throughput, the profile it ran with."""
    counts, progress = info.details.get("counts") or {}, info.details.get("progress") or {}
    parts = []
    if counts:
        parts.append(f"{counts['inputs']} images, {counts['scored']} scored, {counts['errors']} errors")
    if seconds := job_duration(info):
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
    seconds = job_duration(info)
    return {"status": "success" if succeeded else "error", "job_name": info.name, "job_status": info.status,
            "url": info.url, "message": message, "counts": info.details.get("counts"),
            "duration_s": round(seconds, 3) if seconds else None}
