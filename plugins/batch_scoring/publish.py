"""Validate a month's merged outputs against its inputs, then publish them with a manifest.

Validation checks the docs/contracts.md rules (columns and order, one row per image,
sorted, scores in [0, 1], month and model columns, and the accounting invariant
`predictions ∪ errors == inputs`, disjoint) and publishes nothing if any fails.

Publishing is atomic for readers who follow the manifest: the old
`manifest.json` is removed first, the files are uploaded, and the new manifest,
holding every file's sha256, is written last. No manifest means "being
published"; a manifest always matches the files it lists.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from batch_scoring.report import REPORT_FILE
from scoring.items import encode_name
from scoring.merge import ERRORS_FILE, PREDICTIONS_FILE
from scoring.reuse import sha256_of
from scoring.rows import ERROR_COLUMNS, PREDICTION_COLUMNS, in_item_order

PUBLISHED_FILES = (PREDICTIONS_FILE, ERRORS_FILE, REPORT_FILE)
MANIFEST_FILE = "manifest.json"
_SHOWN = 3  # examples named in a one-line error


class ValidationFailed(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class MonthOutputs:
    inputs: int
    scored: int
    errors: int


def list_month_items(container_client, month: str) -> list[str]:
    """Every blob under `<month>/`, as image ids relative to the month folder."""
    prefix = f"{month}/"
    return in_item_order(encode_name(blob.name[len(prefix):])
                         for blob in container_client.list_blobs(name_starts_with=prefix))


def month_fingerprint(container_client, month: str) -> tuple[int, str]:
    """(blob count, digest of every blob's name and ETag under `<month>/`): any added, changed or removed blob
    changes it. Streamed: memory stays flat on a month of any size (the listing is in name order)."""
    digest, count = hashlib.sha256(), 0
    for blob in container_client.list_blobs(name_starts_with=f"{month}/"):
        digest.update(f"{blob.name}\0{blob.etag}\n".encode("utf-8", "surrogatepass"))
        count += 1
    return count, digest.hexdigest()


def _read_csv(path: Path, expected: tuple[str, ...]) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = tuple(reader.fieldnames or ())
        if header[: len(expected)] != expected:
            raise ValidationFailed(f"{path.name} has columns {list(header)}, expected {list(expected)} first")
        return list(reader)


def _examples(items: Iterable[str]) -> str:
    items = sorted(items)
    shown = ", ".join(repr(item) for item in items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def validate_outputs(folder: Path, input_items: Iterable[str], *, month: str, model_name: str,
                     model_version: str) -> MonthOutputs:
    """Raise `ValidationFailed` with one line naming the first broken rule; else return the counts."""
    inputs = set(input_items)
    predictions = _read_csv(folder / PREDICTIONS_FILE, PREDICTION_COLUMNS)
    errors = _read_csv(folder / ERRORS_FILE, ERROR_COLUMNS)
    for name, rows in ((PREDICTIONS_FILE, predictions), (ERRORS_FILE, errors)):
        images = [row["image"] for row in rows]
        if images != in_item_order(images):
            raise ValidationFailed(f"{name} is not sorted by image")
        if len(set(images)) != len(images):
            duplicates = {image for image in images if images.count(image) > 1}
            raise ValidationFailed(f"{name} lists {_examples(duplicates)} more than once")
    scored = {row["image"] for row in predictions}
    failed = {row["image"] for row in errors}
    if scored & failed:
        raise ValidationFailed(f"{_examples(scored & failed)} appear in both predictions.csv and errors.csv")
    if missing := inputs - scored - failed:
        raise ValidationFailed(f"{len(missing)} input images are in neither file: {_examples(missing)}")
    if unknown := (scored | failed) - inputs:
        raise ValidationFailed(f"{len(unknown)} output rows name no input image: {_examples(unknown)}")
    for row in predictions:
        try:
            score = float(row["score"])
        except ValueError:
            score = math.nan
        if not 0.0 <= score <= 1.0:
            raise ValidationFailed(f"score {row['score']!r} of {row['image']!r} is not a probability in [0, 1]")
        if not row["label"]:
            raise ValidationFailed(f"{row['image']!r} has an empty label")
        if row["month"] != month:
            raise ValidationFailed(f"{row['image']!r} has month {row['month']!r}, expected {month!r}")
        if (row["model_name"], row["model_version"]) != (model_name, str(model_version)):
            raise ValidationFailed(
                f"{row['image']!r} was scored by {row['model_name']}:{row['model_version']}, "
                f"expected {model_name}:{model_version}"
            )
    for row in errors:
        if not row["error_type"] or not row["message"]:
            raise ValidationFailed(f"error row of {row['image']!r} has no error_type or message")
    if inputs and not scored:
        raise ValidationFailed(f"none of the {len(inputs)} input images was scored; see errors.csv and the job log")
    return MonthOutputs(inputs=len(inputs), scored=len(scored), errors=len(failed))


def build_manifest(folder: Path, counts: MonthOutputs, **fields: Any) -> dict[str, Any]:
    files = {
        name: {"sha256": sha256_of(folder / name), "bytes": (folder / name).stat().st_size}
        for name in PUBLISHED_FILES
    }
    return {**fields, "counts": dataclasses.asdict(counts), "files": files}


def publish_month(container_client, month: str, folder: Path, manifest: dict[str, Any]) -> list[str]:
    """Upload the files under `<month>/`, manifest last; returns the blob names written."""
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

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
            container_client.upload_blob(f"{month}/{name}", data, overwrite=True)
        written.append(f"{month}/{name}")
    body = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
    container_client.upload_blob(f"{month}/{MANIFEST_FILE}", body, overwrite=True)
    written.append(f"{month}/{MANIFEST_FILE}")
    return written
