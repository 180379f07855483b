"""The DAG's last step as one function: validate the job's outputs, report, compare, publish.

Order matters: only the month's latest attempt publishes (an older job finishing,
or publishing, late never replaces a newer submission's predictions: the rule is
the attempt order, not who finishes last); nothing is published unless
validation passes; the report and the manifest carry the month's summary, which
the next month's drift compares against; the manifest goes last (see
`publish.publish_month`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from batch_scoring.attempts import MODEL_TAG
from batch_scoring.backends.base import split_attempt
from batch_scoring.drift import DEFAULT_PSI_THRESHOLD, compare
from batch_scoring.month import month_before
from batch_scoring.month_listing import MonthListing
from batch_scoring.publish import MANIFEST_FILE, PUBLISHED_FILES, build_manifest, publish_month, read_manifest
from batch_scoring.report import REPORT_FILE, summarize, write_report
from batch_scoring.validation import validate_outputs
from scoring.blob_location import BlobFolder
from scoring.rows import PREDICTION_COLUMNS

log = logging.getLogger(__name__)


class PublishRefused(RuntimeError):
    """Publishing this job would replace a newer attempt's predictions; the message says what to do."""


def check_latest_attempt(workspace, job_name: str, month: str) -> None:
    """Refuse a job that is not the newest attempt of its month's family (`<base>`, `<base>-r1`, …)."""
    base, _attempt = split_attempt(job_name)
    family = workspace.job_attempts(base)
    newest = family[-1] if family else None
    if newest is not None and newest.name != job_name:
        model = newest.tags.get(MODEL_TAG, "an unrecorded model")
        raise PublishRefused(
            f"job {job_name} is not month {month}'s latest attempt: {newest.name} ({model}, {newest.status}) was "
            f"submitted after it, and publishing would replace what that attempt scores; run the month again to "
            f"publish this model")


def publish_scored_month(*, workspace, images, predictions, month: str, job: dict[str, Any], model_name: str,
                         model_version: str, run_id: str | None = None,
                         drift_threshold: float = DEFAULT_PSI_THRESHOLD,
                         columns: tuple[str, ...] = PREDICTION_COLUMNS) -> tuple[dict[str, Any], list[str]]:
    """Publish the outputs of the completed `job` (the wait task's event) for `month`; returns the manifest and
    the blob names written (manifest last).

    `workspace`: the Azure ML hook (its `download_outputs`); `images`, `predictions`: container clients;
    `columns`: predictions.csv's columns for the outputs the run asked for (`scoring.rows.prediction_columns`)."""
    job_name = job["job_name"]
    check_latest_attempt(workspace, job_name, month)
    with tempfile.TemporaryDirectory(prefix=f"scoring-{month}-") as scratch:
        folder = workspace.download_outputs(job_name, Path(scratch))
        counts = validate_outputs(folder, MonthListing(images, month), month=month, model_name=model_name,
                                  model_version=model_version, columns=columns)
        summary = summarize(folder)
        previous_month = month_before(month)
        previous = read_manifest(predictions, previous_month)
        drift = compare((previous or {}).get("summary"), summary.to_manifest(), previous_month=previous_month,
                        threshold=drift_threshold)
        if drift is None:
            log.info("drift: nothing to compare with, %s was not published", previous_month)
        elif drift.warning:
            log.warning("%s: check the month's inputs and the model before using its predictions", drift.describe())
        else:
            log.info("%s", drift.describe())
        write_report(folder, summary, month=month, model=f"{model_name}:{model_version}", job_name=job_name,
                     drift=drift, previous_month=previous_month,
                     run={"run_id": run_id, "duration_s": job.get("duration_s")},
                     inputs=BlobFolder.of(images, f"{month}/"), outputs=BlobFolder.of(predictions, f"{month}/"),
                     beside=(*(name for name in PUBLISHED_FILES if name != REPORT_FILE), MANIFEST_FILE))
        manifest = build_manifest(folder, counts, month=month, run_id=run_id, job_name=job_name,
                                  model_name=model_name, model_version=str(model_version),
                                  summary=summary.to_manifest(), drift=drift.to_dict() if drift else None)
        written = publish_month(predictions, month, folder, manifest)
    log.info("published %s: %d scored, %d errors of %d images", ", ".join(written), counts.scored, counts.errors,
             counts.inputs)
    return manifest, written
