"""The attempt policy of a month's job, in one place: reattach, reuse, or submit the next attempt.

A month's jobs are one family: `<base>`, `<base>-r1`, `<base>-r2`… Given the job
a run wants (model, inputs fingerprint, settings), `ensure_job`:
- reattaches to a live attempt (a live one of another model is a conflict: one
  month is scored by one model at a time);
- returns an attempt that completed with the same model over the same inputs;
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
    live = [info for info in family if not info.terminal]
    if live:
        job = live[-1]
        if job.tags.get(MODEL_TAG, model) != model:
            raise AttemptConflict(
                f"job {job.name} for month {wanted.month} is {job.status} with model {job.tags[MODEL_TAG]}, not "
                f"{model}: wait for it or cancel it, then run again ({job.url})")
        log.info("reattaching to job %s, which is %s", job.name, job.status)
        return job
    for job in reversed(family):
        if job.status == JobStatus.COMPLETED and job.tags.get(MODEL_TAG) == model:
            if job.tags.get(INPUTS_TAG) == inputs:
                log.info("job %s already scored month %s with %s; nothing submitted", job.name, wanted.month, model)
                return job
            log.info("job %s scored month %s with %s, but the month's blobs changed since; submitting a new "
                     "attempt (only new or changed images are scored where the backend keeps finished rows)",
                     job.name, wanted.month, model)
            break
    name = attempt_name(base, attempt_number(family[-1].name, base) + 1 if family else 0)
    try:
        job = workspace.submit_job(dataclasses.replace(wanted, name=name))
        log.info("submitted job %s (%s) for month %s", job.name, job.status, wanted.month)
    except JobAlreadyExists:
        # Another run of the same month submitted it a moment ago: follow that one.
        job = workspace.get_job(name)
        log.info("job %s was just submitted by another run; reattaching (%s)", job.name, job.status)
    return job
