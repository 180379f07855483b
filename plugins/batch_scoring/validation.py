"""Validate a month's merged outputs against its inputs before anything is published.

The docs/contracts.md rules: columns and order, one row per image, sorted, scores in
[0, 1], month and model columns, and the accounting invariant
`predictions ∪ errors == inputs`, disjoint. The CSVs are read with pandas in chunks and
image names are kept as 64-bit hashes, so memory is one chunk plus a few tens of bytes
per image (one hash per input and per output row, and a sort's copy), not the names;
the names of broken rows are found again by a second pass, only then.
Two distinct names sharing a 64-bit hash would hide one missing row: at a million
images the chance is about 3 in 100 million.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from batch_scoring.output_csv import CHUNK_ROWS, read_chunks
from scoring.merge import ERRORS_FILE, PREDICTIONS_FILE
from scoring.rows import ERROR_COLUMNS, PREDICTION_COLUMNS

_SHOWN = 3  # examples named in a one-line error


class ValidationFailed(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class MonthOutputs:
    inputs: int
    scored: int
    errors: int


def _hashes(names: Iterable[str] | np.ndarray) -> np.ndarray:
    return pd.util.hash_array(np.asarray(names, dtype=object)).astype(np.uint64, copy=False)


def _hash_stream(names: Iterable[str], chunk_rows: int) -> np.ndarray:
    iterator, parts = iter(names), []
    while batch := list(itertools.islice(iterator, chunk_rows)):
        parts.append(_hashes(batch))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)


def _examples(items: Iterable[str]) -> str:
    items = sorted(items)
    shown = ", ".join(repr(item) for item in items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _names_with(hashes: np.ndarray, names: Callable[[], Iterable[str]], chunk_rows: int) -> list[str]:
    """Second pass, on failure only: the names among `names()` whose hash is in `hashes`."""
    found, iterator = [], iter(names())
    while batch := list(itertools.islice(iterator, chunk_rows)):
        found += [name for name, hit in zip(batch, np.isin(_hashes(batch), hashes)) if hit]
    return found


def _csv_images(path: Path, chunk_rows: int) -> Callable[[], Iterator[str]]:
    def images() -> Iterator[str]:
        for chunk in read_chunks(path, chunk_rows=chunk_rows, usecols=["image"]):
            yield from chunk["image"]
    return images


def _check_header(path: Path, expected: tuple[str, ...]) -> None:
    header = tuple(pd.read_csv(path, nrows=0, dtype=str, encoding="utf-8").columns)
    if header != expected:
        raise ValidationFailed(f"{path.name} has columns {list(header)}, expected {list(expected)}")


def _scan(path: Path, expected: tuple[str, ...], check_rows: Callable[[pd.DataFrame], None],
          chunk_rows: int) -> np.ndarray:
    """Hashes of the file's images, in file order, after checking header, order, uniqueness and each chunk."""
    _check_header(path, expected)
    previous, parts = None, []
    for chunk in read_chunks(path, chunk_rows=chunk_rows):
        images = chunk["image"].to_numpy(dtype=object)
        joined = images if previous is None else np.concatenate([[previous], images])
        if len(joined) > 1:
            later, earlier = joined[1:], joined[:-1]
            if (later < earlier).any():
                raise ValidationFailed(f"{path.name} is not sorted by image")
            if (repeated := later[later == earlier]).size:
                raise ValidationFailed(f"{path.name} lists {_examples(set(repeated))} more than once")
        check_rows(chunk)
        parts.append(_hashes(images))
        previous = images[-1] if len(images) else previous
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)


def _json_or_none(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def validate_outputs(folder: Path, input_items: Iterable[str], *, month: str, model_name: str,
                     model_version: str, columns: tuple[str, ...] = PREDICTION_COLUMNS,
                     chunk_rows: int = CHUNK_ROWS) -> MonthOutputs:
    """Raise `ValidationFailed` with one line naming the first broken rule; else return the counts.

    `columns`: predictions.csv's columns for the outputs the run asked for (top-k, multi-label, every class's
    score). `input_items` may be iterated twice (the second time only to name missing images)."""
    model_version = str(model_version)
    ranks = [column for column in columns if re.fullmatch(r"score(_[0-9]+)?", column)]  # score, score_2, ...

    def check_predictions(chunk: pd.DataFrame) -> None:
        previous = None
        for column in ranks:
            scores = pd.to_numeric(chunk[column], errors="coerce")
            if (bad := chunk[~scores.between(0.0, 1.0)]).size:
                row = bad.iloc[0]
                raise ValidationFailed(f"{column} {row[column]!r} of {row['image']!r} is not a probability in [0, 1]")
            if previous is not None and (bad := chunk[scores > previous + 1e-9]).size:
                raise ValidationFailed(f"{bad.iloc[0]['image']!r}: {column} is above the score before it; top-k "
                                       "classes must come best first")
            previous = scores
            label = column.replace("score", "label")
            if (bad := chunk[chunk[label] == ""]).size:
                raise ValidationFailed(f"{bad.iloc[0]['image']!r} has an empty {label}")
        for column, kind in (("labels", list), ("scores", dict)):
            if column in chunk:
                for image, text in zip(chunk["image"], chunk[column]):
                    if not isinstance(_json_or_none(text), kind):
                        raise ValidationFailed(f"{column} of {image!r} is not a JSON {kind.__name__}: {text[:60]!r}")
        if (bad := chunk[chunk["month"] != month]).size:
            row = bad.iloc[0]
            raise ValidationFailed(f"{row['image']!r} has month {row['month']!r}, expected {month!r}")
        if (bad := chunk[(chunk["model_name"] != model_name) | (chunk["model_version"] != model_version)]).size:
            row = bad.iloc[0]
            raise ValidationFailed(f"{row['image']!r} was scored by {row['model_name']}:{row['model_version']}, "
                                   f"expected {model_name}:{model_version}")

    def check_errors(chunk: pd.DataFrame) -> None:
        if (bad := chunk[(chunk["error_type"] == "") | (chunk["message"] == "")]).size:
            raise ValidationFailed(f"error row of {bad.iloc[0]['image']!r} has no error_type or message")

    scored = _scan(folder / PREDICTIONS_FILE, tuple(columns), check_predictions, chunk_rows)
    failed = _scan(folder / ERRORS_FILE, ERROR_COLUMNS, check_errors, chunk_rows)
    scored_count, failed_count = int(scored.size), int(failed.size)
    outputs = np.concatenate([scored, failed])
    del scored, failed  # from here on one array per side: the peak stays a few tens of bytes per image
    outputs.sort()
    inputs = _hash_stream(input_items, chunk_rows)
    inputs.sort()
    inputs = inputs[np.concatenate([[True], inputs[1:] != inputs[:-1]])] if inputs.size else inputs
    predictions_images = _csv_images(folder / PREDICTIONS_FILE, chunk_rows)
    if outputs.size > 1 and (both := outputs[1:][outputs[1:] == outputs[:-1]]).size:
        names = _names_with(both, predictions_images, chunk_rows)
        raise ValidationFailed(f"{_examples(names)} appear in both predictions.csv and errors.csv")
    if not np.array_equal(inputs, outputs):  # the usual case is equal: the set differences are for the message
        if (missing := np.setdiff1d(inputs, outputs, assume_unique=True)).size:
            names = _names_with(missing, lambda: input_items, chunk_rows)
            raise ValidationFailed(f"{len(missing)} input images are in neither file: {_examples(names)}")
        unknown = np.setdiff1d(outputs, inputs, assume_unique=True)
        names = _names_with(unknown, lambda: itertools.chain(predictions_images(),
                                                             _csv_images(folder / ERRORS_FILE, chunk_rows)()),
                            chunk_rows)
        raise ValidationFailed(f"{len(unknown)} output rows name no input image: {_examples(names)}")
    if inputs.size and not scored_count:
        raise ValidationFailed(f"none of the {inputs.size} input images was scored; see errors.csv and the job log")
    return MonthOutputs(inputs=int(inputs.size), scored=scored_count, errors=failed_count)
