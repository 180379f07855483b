"""What became of every input item of one job, kept on disk so that memory does not grow with the month.

The job's main process holds counters and the mini-batches in flight; each
item's row, its failure and the rows reusable from earlier attempts live in one
SQLite file in the job's work folder (its page cache is bounded), and the merge
streams both CSVs out of it in item order. The file is scratch: each attempt
builds its own, the reuse cache (`scoring.reuse`) is what carries over.

Item order: SQLite's default (BINARY) collation compares the UTF-8 bytes of
names, which is code point order, the order `scoring.rows.in_item_order` defines.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from scoring.rows import is_error

LEDGER_FILE = "ledger.sqlite"  # in the job's work folder
_SCHEMA = """
CREATE TABLE items (
    name TEXT PRIMARY KEY,
    row TEXT,               -- the row kept for it (JSON), or NULL
    is_error INTEGER,       -- 1 when that row is an error row
    failure_type TEXT,      -- why it has no row: it could not be read, or its mini-batch failed
    failure_message TEXT
) WITHOUT ROWID;
CREATE TABLE reusable (key TEXT PRIMARY KEY, row TEXT NOT NULL) WITHOUT ROWID;
"""
_COMMIT_EVERY = 10_000  # statements per transaction: fast inserts without an unbounded journal in memory
_PAGE_CACHE_KIB = 4096


class JobLedger:
    """Inputs, rows and failures of one job, by item name; one connection, used from one thread."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (self.path, self.path.with_name(self.path.name + "-journal")):
            stale.unlink(missing_ok=True)
        self._db = sqlite3.connect(self.path)
        # Scratch data, rebuilt by the next attempt: no journal, no fsync.
        self._db.executescript(f"PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                               f"PRAGMA cache_size=-{_PAGE_CACHE_KIB}; {_SCHEMA}")
        self._writes = 0

    def close(self) -> None:
        self._db.commit()
        self._db.close()

    def __enter__(self) -> JobLedger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def add_reusable(self, rows: Iterable[dict], key_field: str) -> int:
        """Rows finished by earlier attempts or runs, by their reuse key (the last one of a key wins); how many."""
        for row in rows:
            self._write("INSERT OR REPLACE INTO reusable VALUES (?, ?)", (row[key_field], json.dumps(row)))
        return self._db.execute("SELECT COUNT(*) FROM reusable").fetchone()[0]

    def reusable(self, key: str) -> dict | None:
        found = self._db.execute("SELECT row FROM reusable WHERE key = ?", (key,)).fetchone()
        return json.loads(found[0]) if found else None

    def add_input(self, name: str) -> bool:
        """Record an input item; False when the job already has one of that name."""
        return self._write("INSERT OR IGNORE INTO items (name) VALUES (?)", (name,)) == 1

    def record_row(self, row: dict) -> None:
        """Keep `row` for its item: the first scored row wins over any error row (a retry scored what an earlier
        try could not), the first error row over later ones. A row for an item that is not an input raises."""
        text = json.dumps(row, ensure_ascii=False)
        if is_error(row):
            changed = self._write("UPDATE items SET row = ?, is_error = 1 WHERE name = ? AND row IS NULL",
                                  (text, row["image"]))
        else:
            changed = self._write("UPDATE items SET row = ?, is_error = 0 WHERE name = ? "
                                  "AND (row IS NULL OR is_error = 1)", (text, row["image"]))
        if not changed and not self._db.execute("SELECT 1 FROM items WHERE name = ?", (row["image"],)).fetchone():
            raise ValueError(f"row for {row['image']!r}, which is not an input item of this job")

    def record_failure(self, name: str, error_type: str, message: str) -> None:
        """Why the item has no row (used only when it ends without one)."""
        self._write("UPDATE items SET failure_type = ?, failure_message = ? WHERE name = ?",
                    (error_type, message, name))

    def counts(self) -> tuple[int, int]:
        """(inputs, scored)."""
        inputs, scored = self._db.execute("SELECT COUNT(*), COALESCE(SUM(is_error = 0), 0) FROM items").fetchone()
        return inputs, scored

    def scored_rows(self) -> Iterator[dict]:
        for (text,) in self._db.execute("SELECT row FROM items WHERE is_error = 0 ORDER BY name"):
            yield json.loads(text)

    def unscored(self) -> Iterator[tuple[str, dict | None, tuple[str, str] | None]]:
        """(name, its error row or None, its failure or None) of every item without a scored row, in item order."""
        query = ("SELECT name, row, failure_type, failure_message FROM items "
                 "WHERE row IS NULL OR is_error = 1 ORDER BY name")
        for name, text, error_type, message in self._db.execute(query):
            yield name, json.loads(text) if text else None, (error_type, message) if error_type else None

    def kept_rows(self) -> Iterator[dict]:
        """Every row kept for an item of this job, scored or error."""
        for (text,) in self._db.execute("SELECT row FROM items WHERE row IS NOT NULL ORDER BY name"):
            yield json.loads(text)

    def _write(self, statement: str, parameters: tuple) -> int:
        changed = self._db.execute(statement, parameters).rowcount
        self._writes += 1
        if self._writes % _COMMIT_EVERY == 0:
            self._db.commit()
        return changed
