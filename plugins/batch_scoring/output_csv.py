"""Reading the job's output CSVs back: in chunks of strings, exactly as written.

The publish step's validation and the report read `predictions.csv` and `errors.csv`
this way, so memory is one chunk however many rows a month has.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

CHUNK_ROWS = 200_000


def read_chunks(path: Path, *, chunk_rows: int = CHUNK_ROWS, usecols=None):
    """The CSV as chunks of strings, exactly as written: no NA guessing ('NA', 'null' are names, not gaps)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, chunksize=chunk_rows,
                       encoding="utf-8", usecols=usecols)
