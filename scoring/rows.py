"""The rows `run()` returns and the two CSVs they become (columns: docs/contracts.md).

`run()` returns one JSON line per input item, as `append_row` collects them: a
scored item carries `label`/`score`, an item that could not be scored carries
`error_type`/`message`. JSON keeps commas, spaces and any Unicode in file names
intact through Azure ML's line-oriented `append_row` file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

PREDICTION_COLUMNS = ("image", "label", "score", "model_name", "model_version", "month")
ERROR_COLUMNS = ("image", "error_type", "message")


class ErrorType:
    """Why an input item was not scored; one word, stable for reports."""

    EMPTY = "empty"
    NOT_AN_IMAGE = "not_an_image"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    TOO_LARGE = "too_large"
    UNREADABLE = "unreadable"
    UNEXPECTED = "unexpected"
    MINI_BATCH_FAILED = "mini_batch_failed"
    MISSING_RESULT = "missing_result"


def scored_row(image: str, label: str, score: float, *, model_name: str, model_version: str, month: str) -> str:
    return _dump({
        "image": image,
        "label": label,
        "score": round(float(score), 6),
        "model_name": model_name,
        "model_version": model_version,
        "month": month,
    })


def error_row(image: str, error_type: str, message: str) -> str:
    # One line, always: a multi-line message would break the CSV readers' eyes and the log.
    return _dump({"image": image, "error_type": error_type, "message": " ".join(str(message).split())})


def in_item_order(names: Iterable[str]) -> list[str]:
    """The one order of rows in both CSVs (by code point), for the writer and the validator alike."""
    return sorted(names)


def parse_row(line: str) -> dict[str, Any]:
    return json.loads(line)


def is_error(row: dict[str, Any]) -> bool:
    return "error_type" in row


def _dump(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))
