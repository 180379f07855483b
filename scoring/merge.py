"""Merge appended rows into `predictions.csv` and `errors.csv`, accounting for every input.

This is the pipeline's second step on Azure ML and the last step of the local
runner: the same code on both backends. Every input item ends in exactly one
of the two files; an input with no row at all (its mini-batch failed after its
retries) is listed in `errors.csv` rather than lost.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from scoring.items import walk_folder
from scoring.job_settings import UNLIMITED, exceeds
from scoring.rows import ERROR_COLUMNS, PREDICTION_COLUMNS, ErrorType, columns_of, in_item_order, is_error, parse_row

PREDICTIONS_FILE = "predictions.csv"
ERRORS_FILE = "errors.csv"


class ErrorThresholdExceeded(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class MergeResult:
    inputs: int
    scored: int
    errors: int


def read_rows(paths: Iterable[Path]) -> Iterable[dict]:
    for path in paths:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    yield parse_row(line)


def merge_rows(
    rows: Iterable[dict],
    input_items: Iterable[str],
    out_dir: Path,
    *,
    failed_items: Mapping[str, tuple[str, str]] | None = None,
    error_threshold: int = UNLIMITED,
) -> MergeResult:
    """Write both CSVs, sorted by image, one row per input item.

    `failed_items` maps items of failed mini-batches to (error_type, message);
    other inputs without a row are reported as missing results. Rows for items
    that are not inputs are a bug upstream and raise.
    """
    inputs = set(input_items)
    scored: dict[str, dict] = {}
    errors: dict[str, dict] = {}
    for row in rows:
        image = row["image"]
        if image not in inputs:
            raise ValueError(f"row for {image!r}, which is not an input item of this job")
        if is_error(row):
            errors.setdefault(image, row)
        else:
            scored.setdefault(image, row)  # a retried mini-batch may append twice
    for image in scored.keys() & errors.keys():
        del errors[image]  # a retry scored what an earlier try could not
    for image in sorted(inputs - scored.keys() - errors.keys()):
        error_type, message = (failed_items or {}).get(
            image, (ErrorType.MISSING_RESULT, "no result: its mini-batch failed after all retries; see the job logs")
        )
        errors[image] = {"image": image, "error_type": error_type, "message": message}
    if exceeds(len(errors), error_threshold):
        raise ErrorThresholdExceeded(
            f"{len(errors)} of {len(inputs)} items failed, above error_threshold={error_threshold}; nothing was written"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = columns_of(next(iter(scored.values()))) if scored else PREDICTION_COLUMNS
    _write_csv(out_dir / PREDICTIONS_FILE, columns, (scored[k] for k in in_item_order(scored)))
    _write_csv(out_dir / ERRORS_FILE, ERROR_COLUMNS, (errors[k] for k in in_item_order(errors)))
    return MergeResult(inputs=len(inputs), scored=len(scored), errors=len(errors))


def _write_csv(path: Path, columns: tuple[str, ...], rows: Iterable[dict]) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8", newline="") as handle:
        # RFC 4180 line ends: with "\r\n" as the terminator, a field holding "\r" or "\n" is always quoted.
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> int:
    """The Azure ML merge step: `python -m scoring.merge --rows … --input_root … --out …`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", required=True, type=Path, help="append_row output file or folder")
    parser.add_argument("--input_root", required=True, type=Path, help="the month folder the job scored")
    parser.add_argument("--out", required=True, type=Path, help="folder for predictions.csv and errors.csv")
    parser.add_argument("--error_threshold", type=int, default=UNLIMITED)
    args = parser.parse_args(argv)
    row_files = sorted(p for p in args.rows.rglob("*") if p.is_file()) if args.rows.is_dir() else [args.rows]
    items = list(walk_folder(args.input_root))
    try:
        result = merge_rows(
            read_rows(row_files), [item.name for item in items], args.out, error_threshold=args.error_threshold,
            failed_items={item.name: item.failure for item in items if item.failure},
        )
    except ErrorThresholdExceeded as error:
        print(f"merge failed: {error}", file=sys.stderr)
        return 1
    print(f"merged {result.inputs} inputs: {result.scored} scored, {result.errors} errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
