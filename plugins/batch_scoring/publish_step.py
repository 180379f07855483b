"""The DAG's last step as one function: validate the job's outputs, report, compare, publish.

Order matters: nothing is published unless validation passes; the report and
the manifest carry the month's summary, which the next month's drift compares
against; the manifest goes last (see `publish.publish_month`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from batch_scoring.drift import DEFAULT_PSI_THRESHOLD, compare
from batch_scoring.month import month_before
from batch_scoring.publish import (
    MANIFEST_FILE,
    PUBLISHED_FILES,
    MonthListing,
    build_manifest,
    publish_month,
    read_manifest,
    validate_outputs,
)
from batch_scoring.report import REPORT_FILE, summarize, write_report
from scoring.blob_location import BlobFolder
from scoring.rows import PREDICTION_COLUMNS

log = logging.getLogger(__name__)


def publish_scored_month(*, workspace, images, predictions, month: str, job: dict[str, Any], model_name: str,
                         model_version: str, run_id: str | None = None,
                         drift_threshold: float = DEFAULT_PSI_THRESHOLD,
                         columns: tuple[str, ...] = PREDICTION_COLUMNS) -> dict[str, Any]:
    """Publish the outputs of the completed `job` (the wait task's event) for `month`; returns the manifest.

    `workspace`: the Azure ML hook (its `download_outputs`); `images`, `predictions`: container clients;
    `columns`: predictions.csv's columns for the outputs the run asked for (`scoring.rows.prediction_columns`)."""
    job_name = job["job_name"]
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
    return manifest
