"""Publish a validated month with a manifest, atomically for readers who follow the manifest.

The old `manifest.json` is removed first, the files are uploaded with their content
types, and the new manifest, holding every file's sha256, the publish time and the run
that produced them, is written last. No manifest means "being published"; a manifest
always matches the files it lists.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

from batch_scoring.report import REPORT_FILE
from batch_scoring.validation import MonthOutputs
from scoring.merge import ERRORS_FILE, PREDICTIONS_FILE
from scoring.reuse import sha256_of

PUBLISHED_FILES = (PREDICTIONS_FILE, ERRORS_FILE, REPORT_FILE)
MANIFEST_FILE = "manifest.json"
CONTENT_TYPES = {".csv": "text/csv; charset=utf-8", ".json": "application/json",
                 ".html": "text/html; charset=utf-8"}


def build_manifest(folder: Path, counts: MonthOutputs, *, published_at: dt.datetime | None = None,
                   **fields: Any) -> dict[str, Any]:
    """The manifest: `fields` (month, run, job, model, summary, drift…), counts, files with sha256, publish time."""
    files = {
        name: {"sha256": sha256_of(folder / name), "bytes": (folder / name).stat().st_size,
               "content_type": content_type(name)}
        for name in PUBLISHED_FILES
    }
    published_at = published_at or dt.datetime.now(dt.timezone.utc)
    return {**fields, "published_at": published_at.isoformat(timespec="seconds"),
            "counts": dataclasses.asdict(counts), "files": files}


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")


def read_manifest(container_client, month: str) -> dict[str, Any] | None:
    """The published manifest of `month`, or None when that month was never published (or is being published)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return json.loads(container_client.download_blob(f"{month}/{MANIFEST_FILE}").readall())
    except ResourceNotFoundError:
        return None


def publish_month(container_client, month: str, folder: Path, manifest: dict[str, Any]) -> list[str]:
    """Upload the files under `<month>/`, manifest last; returns the blob names written."""
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
    from azure.storage.blob import ContentSettings

    try:
        container_client.create_container()
    except ResourceExistsError:
        pass
    try:
        container_client.delete_blob(f"{month}/{MANIFEST_FILE}")
    except ResourceNotFoundError:
        pass
    written = []
    for name in PUBLISHED_FILES:
        with open(folder / name, "rb") as data:
            container_client.upload_blob(f"{month}/{name}", data, overwrite=True,
                                         content_settings=ContentSettings(content_type=content_type(name)))
        written.append(f"{month}/{name}")
    body = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
    container_client.upload_blob(f"{month}/{MANIFEST_FILE}", body, overwrite=True,
                                 content_settings=ContentSettings(content_type=content_type(MANIFEST_FILE)))
    written.append(f"{month}/{MANIFEST_FILE}")
    return written
