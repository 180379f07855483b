"""The predictions' history: one row per published month, kept beside the months in the predictions container.

What the downstream example DAG (`monthly_predictions_history`) does for each
month the monthly DAG publishes: it checks that the month's files are the ones
its manifest lists (sha256 and size, read back from storage), then records the
month's counts in `history.csv` at the container's root, replacing that month's
row if it was published before. Two months recorded at once cannot lose each
other's row: the table is rewritten only if it has not changed since it was read
(its ETag), else read again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

from batch_scoring.publish import read_manifest
from scoring.month import validate_month

log = logging.getLogger(__name__)

HISTORY_FILE = "history.csv"
HISTORY_COLUMNS = ("month", "published_at", "job_name", "model_name", "model_version", "inputs", "scored", "errors",
                   "drift_warning")
_ATTEMPTS = 30  # rewrites raced by another month's before giving up; each waits a random moment first


class PublishedMonthMismatch(RuntimeError):
    """The month's published files are not what its manifest lists (or there is no manifest)."""


def verify_published(container_client, month: str) -> dict[str, Any]:
    """The month's manifest, once every file it lists reads back with its sha256 and size; raises in one line."""
    month = validate_month(month)
    manifest = read_manifest(container_client, month)
    if manifest is None:
        raise PublishedMonthMismatch(f"month {month} has no manifest.json: it was never published, or is being "
                                     f"published again")
    for name, expected in sorted(manifest["files"].items()):
        digest, size = hashlib.sha256(), 0
        for chunk in container_client.download_blob(f"{month}/{name}").chunks():
            digest.update(chunk)
            size += len(chunk)
        if (digest.hexdigest(), size) != (expected["sha256"], expected["bytes"]):
            raise PublishedMonthMismatch(
                f"{month}/{name} is not the file its manifest lists ({size} bytes, sha256 {digest.hexdigest()[:12]}… "
                f"against {expected['bytes']} bytes, {expected['sha256'][:12]}…): publish the month again")
    return manifest


def history_row(manifest: Mapping[str, Any]) -> dict[str, str]:
    counts, drift = manifest["counts"], manifest.get("drift") or {}
    values = {**manifest, **counts, "drift_warning": drift.get("warning", "")}
    return {column: str(values.get(column, "")) for column in HISTORY_COLUMNS}


def _parse(text: str) -> dict[str, dict[str, str]]:
    return {row["month"]: row for row in csv.DictReader(io.StringIO(text))}


def _render(rows: Mapping[str, Mapping[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for month in sorted(rows):
        writer.writerow(rows[month])
    return out.getvalue().encode("utf-8")


def record_month(container_client, manifest: Mapping[str, Any]) -> list[dict[str, str]]:
    """Put the manifest's month into `history.csv` (replacing its row); returns the table's rows, by month."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
    from azure.storage.blob import ContentSettings

    row = history_row(manifest)
    blob = container_client.get_blob_client(HISTORY_FILE)
    settings = ContentSettings(content_type="text/csv; charset=utf-8")
    for attempt in range(_ATTEMPTS):
        if attempt:  # a random wait: writers that collided do not collide again in step
            time.sleep(random.uniform(0.05, 0.2 * min(attempt, 5)))
        try:
            current = blob.download_blob()
        except ResourceNotFoundError:
            rows, etag = {}, None
        else:
            rows, etag = _parse(current.readall().decode("utf-8")), current.properties.etag
        rows[row["month"]] = row
        try:
            if etag is None:
                blob.upload_blob(_render(rows), overwrite=False, content_settings=settings)
            else:
                blob.upload_blob(_render(rows), overwrite=True, etag=etag,
                                 match_condition=MatchConditions.IfNotModified, content_settings=settings)
        except (ResourceExistsError, ResourceModifiedError):
            log.info("%s changed while month %s was being recorded: reading it again", HISTORY_FILE, row["month"])
            continue
        return [rows[month] for month in sorted(rows)]
    raise RuntimeError(f"{HISTORY_FILE} kept changing while month {row['month']} was recorded ({_ATTEMPTS} tries)")
