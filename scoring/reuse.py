"""Exactly once, keyed on what was scored: finished rows are reused only for the same content and scoring.

A row's key is a digest of the item's name and content identity (a content
digest for a local file, the blob's ETag for a downloaded one) and of the scoring
key: the model (registered name and version, the sha256 of the bytes the job
loaded, its metadata), the month, the scoring profile and the outputs asked for.
A changed file, model, month, profile or output gives another key, so its row is
scored again; everything else is kept. The cache is a folder of JSON-lines files, each written whole, so a killed
job loses at most the mini-batches it was running.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from scoring.atomic_write import atomic_write
from scoring.job_settings import WORKER_GROUPS, JobSettings, settings_fields
from scoring.model_snapshot import ModelSnapshot

KEY_FIELD = "key"


def sha256_of(path: Path) -> str:
    """The file's sha256, read in chunks (weights files are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def scoring_key(model: ModelSnapshot, model_name: str, model_version: str, month: str, settings: JobSettings) -> str:
    """What must be equal for a row to stand: the registered model and the bytes loaded for it, its metadata,
    the month, the scoring profile and the outputs."""
    worker_settings = {field.name: getattr(settings, field.name)
                       for group in WORKER_GROUPS for field in settings_fields(group)}
    basis = {"model": [model_name, model_version], "weights": model.digest, "metadata": model.metadata,
             "month": month, "settings": worker_settings}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


def row_key(name: str, identity: str, scoring: str) -> str:
    return hashlib.sha256(f"{scoring}\0{identity}\0{name}".encode("utf-8", "surrogatepass")).hexdigest()


class RowsCache:
    """Rows of finished mini-batches, by key, in one folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def rows(self) -> Iterator[dict]:
        """Every row on record, streamed (a key may come again, from a retried mini-batch; the later counts)."""
        for path in sorted(self.folder.glob("*.jsonl")):
            with open(path, encoding="utf-8") as lines:
                for line in lines:
                    if line.strip():
                        row = json.loads(line)
                        if KEY_FIELD in row:
                            yield row

    def write(self, rows: Iterable[dict]) -> Path:
        rows = list(rows)
        name = hashlib.sha256("".join(row[KEY_FIELD] for row in rows).encode()).hexdigest()[:24]
        return _write_lines(self.folder / f"{name}.jsonl", rows)

    def compact(self, keep: Iterable[dict]) -> None:
        """One file with the rows still wanted; the rest (stale content, other models) is dropped."""
        current = _write_lines(self.folder / "current.jsonl", keep)
        for path in self.folder.glob("*.jsonl"):
            if path != current:  # a crash before this leaves duplicates of kept rows: the later one counts
                path.unlink()


def _write_lines(path: Path, rows: Iterable[dict]) -> Path:
    with atomic_write(path) as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return path
