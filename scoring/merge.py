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
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from scoring.atomic_write import atomic_write
from scoring.items import walk_folder
from scoring.job_settings import UNLIMITED, exceeds
from scoring.ledger import LEDGER_FILE, JobLedger
from scoring.rows import ERROR_COLUMNS, PREDICTION_COLUMNS, ErrorType, columns_of, parse_row

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

    `failed_items` maps items that could not be scored to (error_type, message); other inputs without a
    row are listed as `mini_batch_failed` (their mini-batch failed for good on the service). Rows for items
    that are not inputs are a bug upstream and raise.
    """
    failures = failed_items or {}
    return _merge(((name, failures.get(name)) for name in input_items), rows, out_dir,
                  error_threshold=error_threshold)


def _merge(inputs: Iterable[tuple[str, tuple[str, str] | None]], rows: Iterable[dict], out_dir: Path, *,
           error_threshold: int) -> MergeResult:
    """(name, failure or None) of every input, and the rows: into a scratch ledger, then both CSVs out of it."""
    with tempfile.TemporaryDirectory(prefix="merge-") as scratch, JobLedger(Path(scratch) / LEDGER_FILE) as ledger:
        for name, failure in inputs:
            ledger.add_input(name)
            if failure:
                ledger.record_failure(name, *failure)
        for row in rows:
            ledger.record_row(row)
        return merge_ledger(ledger, out_dir, error_threshold=error_threshold)


def merge_ledger(ledger: JobLedger, out_dir: Path, *, error_threshold: int = UNLIMITED) -> MergeResult:
    """Write both CSVs from a job's ledger, streaming: every input in exactly one of them, in item order."""
    inputs, scored = ledger.counts()
    errors = inputs - scored
    if exceeds(errors, error_threshold):
        raise ErrorThresholdExceeded(
            f"{errors} of {inputs} items failed, above error_threshold={error_threshold}; nothing was written"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    first = next(ledger.scored_rows(), None)
    columns = columns_of(first) if first else PREDICTION_COLUMNS
    _write_csv(out_dir / PREDICTIONS_FILE, columns, ledger.scored_rows())
    _write_csv(out_dir / ERRORS_FILE, ERROR_COLUMNS, _error_rows(ledger))
    return MergeResult(inputs=inputs, scored=scored, errors=errors)


def _error_rows(ledger: JobLedger) -> Iterator[dict]:
    for image, row, failure in ledger.unscored():
        if row is not None:
            yield row
        else:
            # No row and no recorded reason: on Azure ML, its mini-batch failed for good on the service (run()
            # returns a row for every file it was given, or raises). Listed, never lost.
            error_type, message = failure or (
                ErrorType.MINI_BATCH_FAILED, "no result: its mini-batch failed after all retries; see the scoring "
                                             "step's logs")
            yield {"image": image, "error_type": error_type, "message": message}


def _write_csv(path: Path, columns: tuple[str, ...], rows: Iterable[dict]) -> None:
    with atomic_write(path, newline="") as handle:
        # RFC 4180 line ends: with "\r\n" as the terminator, a field holding "\r" or "\n" is always quoted.
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    """The Azure ML merge step: `python -m scoring.merge --rows … --input_root … --out …`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", required=True, type=Path, help="append_row output file or folder")
    parser.add_argument("--input_root", required=True, type=Path, help="the month folder the job scored")
    parser.add_argument("--out", required=True, type=Path, help="folder for predictions.csv and errors.csv")
    parser.add_argument("--error_threshold", type=int, default=UNLIMITED)
    args = parser.parse_args(argv)
    row_files = sorted(p for p in args.rows.rglob("*") if p.is_file()) if args.rows.is_dir() else [args.rows]
    try:
        result = _merge(((item.name, item.failure) for item in walk_folder(args.input_root)), read_rows(row_files),
                        args.out, error_threshold=args.error_threshold)
    except ErrorThresholdExceeded as error:
        print(f"merge failed: {error}", file=sys.stderr)
        return 1
    print(f"merged {result.inputs} inputs: {result.scored} scored, {result.errors} errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
