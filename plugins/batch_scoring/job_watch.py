"""Watching a job: what a wait makes of each status check, and the lines it logs.

One home for the trigger (deferred) and the non-deferred wait: `JobWatch.after(info)`
says, for one status check, whether the wait ends (and with which event), whether the
job is to be cancelled, what to warn about, the progress line and the pause before the
next check. The job page formats a job with the same helpers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from batch_scoring.backends.base import STALLED_STATUSES, JobStatus
from scoring.progress import describe_progress

# Airflow 3.3 fails a deferred task whose trigger fires before the executor has reported the deferring
# worker's exit (~5 s with the LocalExecutor): apache/airflow#67287, #72716. A job that ends within this
# many seconds of the deferral has its event held until then.
RESUME_DWELL_S = 15.0
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
        cluster = info.details.get("cluster")
        return (f"job {info.name} has been Queued for {seconds / 60:.0f} min: the cluster likely has no quota "
                "for its VM size or cannot get low-priority nodes (preempted); check the compute's quota and "
                "state in the Studio" + (f"; the cluster reports: {cluster}" if cluster else "")), False
    return None, False


CANCEL_AND_WAIT, CANCEL_REQUEST = "cancel and wait", "cancel request"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What to do after one status check."""

    event: dict[str, Any] | None = None  # the wait ends with this event
    cancel: str | None = None  # CANCEL_AND_WAIT, CANCEL_REQUEST (ask, do not wait for it), or None
    warning: str | None = None
    line: str | None = None  # the progress line of a live job
    pause_s: float = 0.0


class JobWatch:
    """One wait's view of one job, from its first status check to its verdict."""

    def __init__(self, job_name: str, *, end_time: float, poll_interval: float, started: float,
                 queued_warning_s: float = QUEUED_WARNING_S, stalled_timeout_s: float = STALLED_TIMEOUT_S):
        self.job_name, self.end_time, self.poll_interval = job_name, end_time, poll_interval
        self.queued_warning_s, self.stalled_timeout_s = queued_warning_s, stalled_timeout_s
        self.started = started  # monotonic seconds when the wait began
        self.clock = StateClock()

    def after(self, info, *, now: float, monotonic: float) -> Verdict:
        """`now`: epoch seconds (the deadline's clock); `monotonic`: for how long the job has been watched."""
        if info.terminal:
            return Verdict(event=job_event(info))
        if now >= self.end_time:
            return Verdict(cancel=CANCEL_AND_WAIT, event=self._error(
                info, f"job {self.job_name} still {info.status} at the wait's deadline; it was cancelled"))
        warning, give_up = stall_check(info, self.clock.seconds_in(info.status, now),
                                       queued_warning_s=self.queued_warning_s,
                                       stalled_timeout_s=self.stalled_timeout_s)
        if give_up:
            return Verdict(cancel=CANCEL_REQUEST, event=self._error(info, warning))
        pause = next_poll_s(self.poll_interval, monotonic - self.started)
        return Verdict(warning=warning, line=f"{still_running(info)}; next check in {pause:.0f}s",
                       pause_s=min(pause, max(0.0, self.end_time - now)) or 0.01)

    def _error(self, info, message: str) -> dict[str, Any]:
        return {"status": "error", "job_name": self.job_name, "job_status": info.status, "url": info.url,
                "message": message}


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
    """What a finished job did, from its status data: counts, duration, throughput, its workers' start-up, the
    profile it ran with."""
    counts, progress = info.details.get("counts") or {}, info.details.get("progress") or {}
    parts = []
    if counts:
        parts.append(f"{counts['inputs']} images, {counts['scored']} scored, {counts['errors']} errors")
    if seconds := job_duration(info):
        rate = f" ({counts['inputs'] / seconds:.1f} img/s)" if counts else ""
        parts.append(f"in {seconds:.1f}s{rate}")
    if progress.get("workers_ready_s") is not None:
        parts.append(f"workers ready after {progress['workers_ready_s']:.1f}s")
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
