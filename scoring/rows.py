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
MODEL_DIGEST = "model_digest"  # what a row was scored with: the sha256 of the model's bytes (not in the CSVs)


def prediction_columns(*, top_k: int = 1, all_scores: bool = False, multi_label: bool = False) -> tuple[str, ...]:
    """The columns of predictions.csv for the chosen outputs: top-1 as today, then `label_2, score_2` … up to
    `top_k`, `labels` (multi-label models: a JSON list of the classes at or above the threshold), `scores`
    (every class's probability as a JSON object), then the model and the month."""
    extra = [f"{column}_{rank}" for rank in range(2, top_k + 1) for column in ("label", "score")]
    extra += ["labels"] if multi_label else []
    extra += ["scores"] if all_scores else []
    return (*PREDICTION_COLUMNS[:3], *extra, *PREDICTION_COLUMNS[3:])


def columns_of(row: dict) -> tuple[str, ...]:
    """The prediction columns a scored row implies (its top-k, multi-label and every-class fields): the job's
    rows all carry the same fields, so the first one tells the merge which columns to write."""
    ranks = [int(key.split("_")[1]) for key in row if key.startswith("score_")]
    return prediction_columns(top_k=max(ranks, default=1), all_scores="scores" in row, multi_label="labels" in row)


class ErrorType:
    """Why an input item was not scored; one word, stable for reports."""

    EMPTY = "empty"
    NOT_AN_IMAGE = "not_an_image"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    TOO_LARGE = "too_large"
    UNREADABLE = "unreadable"
    UNEXPECTED = "unexpected"
    BAD_OUTPUT = "bad_output"
    MINI_BATCH_FAILED = "mini_batch_failed"
    MISSING_RESULT = "missing_result"


def scored_row(image: str, label: str, score: float, *, model_name: str, model_version: str, month: str,
               extra: dict[str, Any] | None = None, model_digest: str | None = None) -> str:
    """A scored item's row; `extra`: the top-k, multi-label and every-class fields (`scoring.predict`)."""
    row = {"image": image, "label": label, "score": round(float(score), 6), **(extra or {}),
           "model_name": model_name, "model_version": model_version, "month": month}
    if model_digest:
        row[MODEL_DIGEST] = model_digest
    return _dump(row)


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
