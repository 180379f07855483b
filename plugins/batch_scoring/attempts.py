"""The attempt policy of a month's job, in one place: reattach, reuse, or submit the next attempt.

A month's jobs are one family: `<base>`, `<base>-r1`, `<base>-r2`… Given the job
a run wants (model, inputs fingerprint, settings), `ensure_job`:
- reattaches to a live attempt (a live one of another model is a conflict: one
  month is scored by one model at a time);
- returns the newest attempt when it completed with the same model over the
  same inputs (only the newest attempt of a month may publish);
- otherwise submits the next attempt: after a failure or a cancellation, when
  the model changed, or when blobs were added, changed or removed since. An
  attempt that stopped answering (`NotResponding`) is cancelled first, so two
  attempts never run side by side. What an earlier attempt finished and is
  still valid is not scored again (the local backend's content-keyed rows; on
  Azure ML, the service reuses nothing across attempts).
Both operators call it: the submit task, and the wait task when a retry finds
its job ended Failed or Canceled.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from batch_scoring.backends.base import (
    JobAlreadyExists,
    JobInfo,
    JobStatus,
    ScoringBackend,
    ScoringJobSpec,
    attempt_name,
    attempt_number,
)
from scoring.job_settings import JobSettings

MODEL_TAG = "model"
INPUTS_TAG = "inputs"
RUN_TAG = "run_id"


class AttemptConflict(RuntimeError):
    """A live attempt of the month runs with another model; the message says what to do."""


class AttemptEnding(RuntimeError):
    """An attempt of the month is being cancelled and has not ended yet: a retry of the task submits the next
    one once it has (the service may keep a job CancelRequested for minutes after the cancel answered)."""


# How long the policy waits, in the task, for a cancelled attempt to end before leaving it to the task's retry.
ENDING_WAIT_S = 120.0
ENDING_POLL_S = 5.0


def spec_to_dict(spec: ScoringJobSpec) -> dict[str, Any]:
    """The job a run wants, as plain values (for XCom)."""
    return dataclasses.asdict(spec)


def spec_from_dict(values: dict[str, Any]) -> ScoringJobSpec:
    return ScoringJobSpec(**{**values, "settings": JobSettings.from_dict(values["settings"])})


def ensure_job(workspace: ScoringBackend, wanted: ScoringJobSpec, log: logging.Logger) -> JobInfo:
    """The attempt that scores `wanted` (its name is the family's base name): live, completed, or new."""
    base = wanted.name
    family = workspace.job_attempts(base)
    model, inputs = wanted.tags.get(MODEL_TAG), wanted.tags.get(INPUTS_TAG)
    stalled = [info for info in family if info.status == JobStatus.NOT_RESPONDING]
    for info in stalled:  # no heartbeat, yet it may still run: cancel it before anything replaces it
        log.warning("job %s is NotResponding; cancelling it before submitting the next attempt", info.name)
        workspace.cancel_job(info.name)
    if stalled:
        family = workspace.job_attempts(base)
    if any(info.status == JobStatus.CANCEL_REQUESTED for info in family):
        family = _after_cancellations(workspace, base, family, log)
    live = [info for info in family if not info.terminal]
    if live:
        job = live[-1]
        if job.tags.get(MODEL_TAG, model) != model:
            raise AttemptConflict(
                f"job {job.name} for month {wanted.month} is {job.status} with model {job.tags[MODEL_TAG]}, not "
                f"{model}: wait for it or cancel it, then run again ({job.url})")
        log.info("reattaching to job %s, which is %s", job.name, job.status)
        return job
    # Only the newest attempt is reused: it is the one the month's publish accepts (`publish_step`).
    newest = family[-1] if family else None
    if newest and newest.status == JobStatus.COMPLETED and newest.tags.get(MODEL_TAG) == model:
        if newest.tags.get(INPUTS_TAG) == inputs:
            log.info("job %s already scored month %s with %s; nothing submitted", newest.name, wanted.month, model)
            return newest
        log.info("job %s scored month %s with %s, but the month's blobs changed since; submitting a new "
                 "attempt (only new or changed images are scored where the backend keeps finished rows)",
                 newest.name, wanted.month, model)
    name = attempt_name(base, attempt_number(family[-1].name, base) + 1 if family else 0)
    try:
        job = workspace.submit_job(dataclasses.replace(wanted, name=name))
        log.info("submitted job %s (%s) for month %s", job.name, job.status, wanted.month)
    except JobAlreadyExists:
        # Another run of the same month submitted it a moment ago: follow that one.
        job = workspace.get_job(name)
        log.info("job %s was just submitted by another run; reattaching (%s)", job.name, job.status)
    return job


def _after_cancellations(workspace: ScoringBackend, base: str, family: list[JobInfo],
                         log: logging.Logger) -> list[JobInfo]:
    """The family once no attempt is CancelRequested: an ending job is neither joined nor run beside."""
    deadline = time.monotonic() + ENDING_WAIT_S
    while True:
        ending = [info.name for info in family if info.status == JobStatus.CANCEL_REQUESTED]
        if not ending:
            return family
        if time.monotonic() >= deadline:
            raise AttemptEnding(f"job {ending[0]} is still CancelRequested after {ENDING_WAIT_S:.0f}s; the next "
                                "attempt is submitted when it has ended (this task retries)")
        log.info("job %s is CancelRequested; waiting for it to end before the next attempt", ending[0])
        time.sleep(ENDING_POLL_S)
        family = workspace.job_attempts(base)
